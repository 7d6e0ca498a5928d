"""Where a command runs: on this machine (subprocess) or on a farm node over SSH (paramiko).

Both runners take an argument list, never a shell string. Over SSH the remote side has a shell, so
the list is joined with shlex quoting; every argument that comes from configuration was validated
at load time as well. Host keys are verified (RejectPolicy): an unknown node is refused.
"""

from __future__ import annotations

import collections
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import dagster as dg
import paramiko
from pydantic import PrivateAttr

from wpfarm_assets.core.config import SSHConfig
from wpfarm_assets.core.errors import WpfarmError

CHUNK = 1 << 20
IDLE_TIMEOUT = 600  # seconds an SSH command may send nothing before it counts as dead
# An argument equal to this is replaced by a path from which the command reads the secret given to
# `Runner.start` (a pipe, so the secret never touches a disk, the command line or the environment).
SECRET_FILE = "\x00secret-file"


# What a child process may see of wpfarm's environment: what the tools need to run. Never the
# secrets wpfarm reads (database and Spaces credentials, tokens): those reach a tool out of band
# (a pipe) or not at all.
CHILD_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "GNUPGHOME")


def child_env(**extra: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in CHILD_ENVIRONMENT if name in os.environ}
    env.setdefault("PATH", os.defpath)
    return {**env, **extra}


# util-linux's setpriv (Essential on Debian): a child started through it gets SIGKILL from the kernel
# when the thread that started it dies, so a killed wpfarm leaves no restic, cp, mariadb or gpg
# running on, half-applying a restore that nobody watches any more.
SETPRIV = shutil.which("setpriv")


def dying_with_us(argv: list[str]) -> list[str]:
    """`argv`, run so that it dies with this process (setpriv --pdeathsig KILL). FileNotFoundError
    when its program is not installed, as Popen would say without the wrapper."""
    if shutil.which(argv[0], path=child_env()["PATH"]) is None:
        raise FileNotFoundError(argv[0])
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv] if SETPRIV else argv


class CommandError(WpfarmError):
    """A command exited non-zero; the message carries its name, exit status and stderr tail."""


class Process(Protocol):
    argv: list[str]

    def read(self, size: int = CHUNK) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def wait(self) -> int: ...
    def kill(self) -> None: ...
    def stderr_tail(self) -> str: ...


class Runner(Protocol):
    where: str

    def start(self, argv: list[str], *, stdin: bool = False, secret: bytes | None = None) -> Process: ...
    def exists(self, path: str) -> bool: ...
    def close(self) -> None: ...


def describe_failure(proc: Process, status: int) -> str:
    tail = proc.stderr_tail().strip()
    return f"{proc.argv[0]} exited with status {status}" + (f": {tail}" if tail else "")


class Watchdog:
    """Calls `stop` once when `progress()` has not been called for `seconds`: the deadline of a
    stage that may hang (a stopped database server, a dead node, a stalled upload). `stalled`
    then says so; the caller puts it first in its error. For a stage that works silently, `probe`
    is asked after half the deadline without progress (then every quarter): a changed answer (the
    size of what it writes, say) counts as progress."""

    def __init__(self, seconds: float, stop: Callable[[], None], what: str, probe: Callable[[], object] | None = None):
        self.seconds, self._stop, self._what, self._probe = seconds, stop, what, probe
        self.stalled: str | None = None
        self._last = time.monotonic()
        self._probed, self._answer = self._last, None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def progress(self, _chunk: object = None) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.seconds / 4)):
            now = time.monotonic()
            if self._probe and now - self._last > self.seconds / 2 and now - self._probed > self.seconds / 4:
                self._probed = now
                try:
                    answer = self._probe()
                except Exception:  # noqa: BLE001 - a probe that fails proves nothing either way
                    answer = self._answer
                if answer != self._answer:
                    self._answer = answer
                    self.progress()
            if time.monotonic() - self._last > self.seconds:
                self.stalled = f"{self._what} made no progress for {self.seconds:g} s (stall timeout)"
                self._stop()
                return

    def close(self) -> None:
        self._done.set()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(runner: Runner, argv: list[str], *, input: bytes | None = None, secret: bytes | None = None,
        timeout: float = 300) -> str:
    """Run to completion and return stdout as text; raise CommandError on a non-zero exit, or when
    the command sends nothing for `timeout` seconds (it is killed)."""
    proc = runner.start(argv, stdin=input is not None, secret=secret)
    with Watchdog(timeout, proc.kill, argv[0]) as watchdog:
        if input is not None:
            proc.write(input)
            proc.close_stdin()
        chunks = []
        while chunk := proc.read():
            watchdog.progress()
            chunks.append(chunk)
        status = proc.wait()
    if watchdog.stalled:
        raise CommandError(watchdog.stalled)
    if status != 0:
        raise CommandError(describe_failure(proc, status))
    return b"".join(chunks).decode()


class LocalProcess:
    def __init__(self, argv: list[str], stdin: bool, secret: bytes | None):
        self.argv = argv
        self._stderr = tempfile.TemporaryFile()
        pass_fds: tuple[int, ...] = ()
        if secret is not None:
            read_fd, write_fd = os.pipe()
            os.write(write_fd, secret)  # a few bytes: fits the pipe buffer, never blocks
            os.close(write_fd)
            pass_fds = (read_fd,)
            argv = [a.replace(SECRET_FILE, f"/dev/fd/{read_fd}") for a in argv]
        try:
            self._proc = subprocess.Popen(
                dying_with_us(argv),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                pass_fds=pass_fds,
                env=child_env(),
            )
        except FileNotFoundError:
            raise CommandError(f"{argv[0]}: command not found on this machine") from None
        finally:
            for fd in pass_fds:
                os.close(fd)

    def read(self, size: int = CHUNK) -> bytes:
        return self._proc.stdout.read1(size)

    def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)

    def close_stdin(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass

    def wait(self) -> int:
        self.close_stdin()
        status = self._proc.wait()
        self._proc.stdout.close()
        return status

    def kill(self) -> None:
        self._proc.kill()

    def stderr_tail(self) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - 4096))
        return self._stderr.read().decode(errors="replace")


class LocalRunner:
    where = "local"

    def start(self, argv: list[str], *, stdin: bool = False, secret: bytes | None = None) -> Process:
        return LocalProcess(list(argv), stdin, secret)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def close(self) -> None:
        pass


T = TypeVar("T")


def open_channel(opener: Callable[[], T]) -> T:
    """Open a channel, waiting out a server that still counts just-closed sessions against MaxSessions."""
    for delay in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2):
        try:
            return opener()
        except paramiko.SSHException:  # "Connect failed" (ChannelException) or "Unable to open channel"
            time.sleep(delay)
    return opener()


class SSHProcess:
    def __init__(self, client: paramiko.SSHClient, argv: list[str], release: Callable[[], None], stdin: bool):
        self.argv = argv
        self._stdin_open = stdin
        self._release = release  # the runner's session slot, given back once when the channel closes
        try:
            self._channel = open_channel(client.get_transport().open_session)
        except BaseException:
            self._done()
            raise
        self._channel.settimeout(IDLE_TIMEOUT)  # a node that dies mid-stream fails the backup, not hangs it
        self._channel.exec_command(shlex.join(argv))
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=64)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        stream = self._channel.makefile_stderr("rb")
        while chunk := stream.read(4096):
            self._stderr.append(chunk)

    def read(self, size: int = CHUNK) -> bytes:
        return self._channel.recv(size)  # b"" only once all buffered data is read and the remote closed

    def write(self, data: bytes) -> None:
        self._channel.sendall(data)

    def close_stdin(self) -> None:
        # Only a command that reads stdin gets its end-of-file, and only once: an EOF sent for a
        # channel the server has just closed (a command that already exited) makes OpenSSH drop the
        # whole connection ("ieof packet referred to nonexistent channel"), and every stream on it.
        if self._stdin_open and not self._channel.closed:
            self._stdin_open = False
            self._channel.shutdown_write()

    def wait(self) -> int:
        self.close_stdin()
        status = self._channel.recv_exit_status()
        self._stderr_thread.join(timeout=5)
        self._channel.close()
        self._done()
        return status

    def kill(self) -> None:
        self._channel.close()
        self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release:
            release()

    def stderr_tail(self) -> str:
        return b"".join(self._stderr)[-4096:].decode(errors="replace")


class SSHRunner:
    """Commands on one node over one SSH connection. OpenSSH serves at most MaxSessions (default
    10) channels per connection, and frees a slot only after the close round trip, so at most
    MAX_SESSIONS run at once, more wait for a slot, and a refused channel is retried (found when 12
    parallel streams failed with "Connect failed")."""

    MAX_SESSIONS = 6

    def __init__(self, config: SSHConfig):
        self.where = f"{config.user}@{config.host}:{config.port}"
        self._sessions = threading.BoundedSemaphore(self.MAX_SESSIONS)
        self._client = paramiko.SSHClient()
        self._client.load_host_keys(os.path.expanduser(config.known_hosts))
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self._client.connect(
                config.host,
                port=config.port,
                username=config.user,
                key_filename=os.path.expanduser(config.key_file) if config.key_file else None,
                allow_agent=False,
                look_for_keys=config.key_file is None,
                timeout=15,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise CommandError(f"cannot reach {self.where} over SSH: {exc}") from None
        self._client.get_transport().set_keepalive(30)

    def start(self, argv: list[str], *, stdin: bool = False, secret: bytes | None = None) -> Process:
        if secret is not None:
            raise CommandError(
                f"secrets are not sent over SSH; give {self.where} its own client option file"
            )
        self._sessions.acquire()
        return SSHProcess(self._client, list(argv), self._sessions.release, stdin)

    def exists(self, path: str) -> bool:
        with self._sessions, open_channel(self._client.open_sftp) as sftp:
            try:
                sftp.lstat(path)
                return True
            except FileNotFoundError:
                return False

    def close(self) -> None:
        self._client.close()


class NodeResource(dg.ConfigurableResource):
    """A farm node commands run on: this machine when `ssh_host` is empty, else over SSH.

    One connection per step: `runner()` opens it on first use and hands the same one to every
    caller (threads included) until the step ends, when Dagster's resource teardown closes it.
    """

    ssh_host: str | None = None
    ssh_port: int = 22
    ssh_user: str = "root"
    ssh_key_file: str | None = None
    ssh_known_hosts: str = "~/.ssh/known_hosts"
    _runner: Runner | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_config(cls, ssh: SSHConfig | None) -> NodeResource:
        if ssh is None:
            return cls()
        return cls(
            ssh_host=ssh.host,
            ssh_port=ssh.port,
            ssh_user=ssh.user,
            ssh_key_file=ssh.key_file,
            ssh_known_hosts=ssh.known_hosts,
        )

    def runner(self) -> Runner:
        with self._lock:
            if self._runner is None:
                self._runner = LocalRunner() if not self.ssh_host else SSHRunner(SSHConfig(
                    host=self.ssh_host, port=self.ssh_port, user=self.ssh_user, key_file=self.ssh_key_file,
                    known_hosts=self.ssh_known_hosts))
            return self._runner

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()
