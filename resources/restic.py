"""restic, the file store: one deduplicated, encrypted, incremental repository per site, on the
backup target beside the database dumps (`file://` path or `s3://` prefix).

restic runs where the files are (this machine, or a node over SSH). Its secrets (the repository
password, and the S3 keys for an `s3:` repository) travel on its stdin: a short `sh` wrapper reads
the three S3 lines (key id, secret, session token) into restic's own environment and leaves the password on stdin for
`--password-file /dev/stdin`. So they are never in an argument list, a remote command line, a log,
or the environment of any other process.

Each site's repository has its own password, derived from the farm's (`WPFARM_RESTIC_PASSWORD`):
HMAC-SHA256(farm password, site name), hex. A site's repository can be handed to its owner with its
password without giving away any other site's. The same derivation with stock tools:
`printf %s SITE | openssl dgst -sha256 -hmac "$WPFARM_RESTIC_PASSWORD" -r | cut -d' ' -f1`.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlparse

from resources.ssh import Runner, Watchdog
from wpfarm_assets.core.errors import WpfarmError

# $1: the folder restic runs in (backups name their members relative to it); the rest: restic's
# arguments. stdin: the S3 key id, secret and session token (each a line, empty when not needed),
# then the password, to the end. TZ=UTC: restic reads `--time` and shows times in local time.
WRAPPER = (
    'IFS= read -r k && IFS= read -r s && IFS= read -r t || { echo "wpfarm: no credentials on stdin" >&2; exit 97; }; '
    'if [ -n "$k" ]; then AWS_ACCESS_KEY_ID=$k AWS_SECRET_ACCESS_KEY=$s; export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; fi; '
    'if [ -n "$t" ]; then AWS_SESSION_TOKEN=$t; export AWS_SESSION_TOKEN; fi; '
    'unset k s t; cd -- "$1" && shift && TZ=UTC RESTIC_PROGRESS_FPS=1 exec restic "$@"'
)
REPOSITORY_VERSION = "2"  # compressed (zstd); restic 0.14 and newer read it
# prune and check print nothing for long stretches (restic 0.14): they get this many stall timeouts.
QUIET_COMMAND_FACTOR = 12


class ResticError(WpfarmError):
    """A restic command failed; the message carries restic's own words (wrong password, locked, …)."""


def site_password(farm_password: str, site: str) -> str:
    return hmac.new(farm_password.encode(), site.encode(), hashlib.sha256).hexdigest()


def repository_url(target: str, endpoint_url: str | None, prefix: str) -> str:
    """restic's name for the repository at `prefix` of the backup target (`file:///p` or `s3://b/p`)."""
    parsed = urlparse(target)
    if parsed.scheme == "file":
        return posixpath.join(parsed.path, prefix).rstrip("/")
    if parsed.scheme == "s3":
        host = (endpoint_url or "https://s3.amazonaws.com").rstrip("/")
        path = "/".join(p for p in (parsed.netloc, parsed.path.strip("/"), prefix.strip("/")) if p)
        return f"s3:{host}/{path}"
    raise ResticError(f"unsupported backup target {target!r}")


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: datetime


def _time(text: str) -> datetime:
    """restic's RFC 3339 time (nanoseconds, any offset) as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _vanished(stderr: str) -> int | None:
    """How many files restic's JSON errors say went away while it read them (ENOENT: a live site),
    or None when any error is something else (a file it could not read). Only whole lines count:
    the first line of a stderr tail may be cut."""
    paths, other = set(), False
    for line in stderr.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "error":
            error = message.get("error") or {}
            if error.get("Err") == errno.ENOENT:
                paths.add(error.get("Path"))
            else:
                other = True
    return None if other or not paths else len(paths)


@dataclass(frozen=True)
class Done:
    stdout: str
    status: int
    stderr: str  # its tail


class Repository:
    """One site's restic repository, used through `runner` (where the files are, for backup and
    restore; this machine for the rest)."""

    def __init__(self, runner: Runner, url: str, password: str | None, region: str = "us-east-1",
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 session_token: str | None = None, stall_timeout: float = 300.0):
        self.runner, self.url, self.stall_timeout = runner, url, stall_timeout
        keys = f"{access_key_id or ''}\n{secret_access_key or ''}\n{session_token or ''}\n"
        self._secrets = f"{keys}{password}".encode() if password else None
        self._options = ["-o", f"s3.region={region}"] if url.startswith("s3:") else []

    def run(self, args: list[str], cwd: str = "/", on_line: Callable[[bytes], bool] | None = None,
            timeout: float | None = None, probe: Callable[[], object] | None = None,
            accept: frozenset[int] = frozenset({0}), sink: Callable[[bytes], object] | None = None) -> Done:
        """Run `restic -r URL ARGS` in `cwd`. `on_line` sees each stdout line and says whether it
        was progress; by default any output is; `probe` is asked when there is none (Watchdog). No
        progress for `timeout` (default the stall timeout) kills restic. An exit status not in
        `accept` raises, with restic's own words. With `sink`, stdout goes there as it comes (a file's
        bytes), not into the result.

        restic 0.14 honours a dead process's lock until `restic unlock` removes it (a lock is stale
        when its process is gone from this host, or it is 30 minutes old): a command refused by a
        lock runs `unlock` and is tried once more. A live lock refuses it again, and that is the error."""
        try:
            return self._run(args, cwd, on_line, timeout, probe, accept, sink)
        except ResticError as exc:
            if "is already locked" not in str(exc):
                raise
        self._run(["unlock"])
        return self._run(args, cwd, on_line, timeout, probe, accept, sink)

    def _run(self, args: list[str], cwd: str = "/", on_line: Callable[[bytes], bool] | None = None,
             timeout: float | None = None, probe: Callable[[], object] | None = None,
             accept: frozenset[int] = frozenset({0}), sink: Callable[[bytes], object] | None = None) -> Done:
        command = f"restic {next(a for a in args if not a.startswith('-'))}"
        if self._secrets is None:
            raise ResticError(f"WPFARM_RESTIC_PASSWORD is not set: the file store ({self.url}) cannot be opened")
        argv = ["sh", "-c", WRAPPER, "restic", cwd, "-r", self.url, "--password-file", "/dev/stdin",
                *self._options, *args]
        proc = self.runner.start(argv, stdin=True)
        with Watchdog(timeout or self.stall_timeout, proc.kill, command, probe) as watchdog:
            try:
                proc.write(self._secrets)
            except (BrokenPipeError, OSError):
                pass  # it died at once; its status and stderr say why
            proc.close_stdin()
            out, pending = bytearray(), b""
            while chunk := proc.read():
                if sink:
                    sink(chunk)
                    watchdog.progress()
                    continue
                out += chunk
                *lines, pending = (pending + chunk).split(b"\n")
                if any(on_line(line) for line in lines) if on_line else True:
                    watchdog.progress()
            status = proc.wait()
        tail = proc.stderr_tail().strip()
        if watchdog.stalled:
            raise ResticError(f"{watchdog.stalled} (repository {self.url})")
        if status not in accept:
            raise ResticError(f"{command} exited with status {status}" + (f": {tail}" if tail else "")
                              + f" (repository {self.url})")
        return Done(out.decode(errors="replace"), status, tail)

    def init(self) -> None:
        self.run(["init", "--repository-version", REPOSITORY_VERSION])

    def backup(self, root: str, members: list[str], excludes: list[str], time: datetime,
               max_file_bytes: int | None = None) -> dict:
        """Snapshot `members` (relative to `root`), incremental against the last snapshot of the same
        paths; return restic's summary (snapshot_id, files_new/changed/unmodified, …), with
        `vanished`: files that went away while restic read them (a live site: exit status 3, the
        snapshot still whole), which are not a failure. Any other file restic could not read is."""
        last: list = [None]

        def progressed(line: bytes) -> bool:  # status lines repeat while restic waits: only change counts
            if line.startswith(b'{"message_type":"status"'):
                status = json.loads(line)
                moved = (status.get("files_done"), status.get("bytes_done"), status.get("total_files"))
                changed, last[0] = moved != last[0], moved
                return changed
            return bool(line.strip())

        stamp = time.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        limit = [f"--exclude-larger-than={max_file_bytes}"] if max_file_bytes else []
        done = self.run(["backup", "--json", "--host", "wpfarm", "--time", stamp, *limit,
                         *(f"--exclude={p}" for p in excludes), "--", *members], cwd=root, on_line=progressed,
                        accept=frozenset({0, 3}))
        vanished = _vanished(done.stderr)
        if done.status == 3 and vanished is None:
            raise ResticError(f"restic backup could not read every file: {done.stderr} (repository {self.url})")
        for line in reversed(done.stdout.splitlines()):
            if line.startswith('{"message_type":"summary"'):
                return {**json.loads(line), "vanished": vanished or 0}
        raise ResticError(f"restic backup gave no summary (repository {self.url})")

    def snapshots(self) -> list[Snapshot]:
        out = self.run(["--no-lock", "snapshots", "--json"]).stdout
        return [Snapshot(s["id"], _time(s["time"])) for s in json.loads(out or "[]")]

    def forget(self, ids: list[str]) -> None:
        if ids:
            self.run(["forget", "--", *ids])

    def prune(self) -> None:
        self.run(["prune"], timeout=self.stall_timeout * QUIET_COMMAND_FACTOR)

    def restore(self, snapshot: str, target: str, include: str | None = None,
                probe: Callable[[], object] | None = None) -> None:
        """Restore the snapshot (only `include`, a path inside it, taken literally) under `target`.
        restic 0.14 restores silently: `probe` (the size of what it wrote) tells it is working."""
        literal = re.sub(r"([*?\[\]\\])", r"\\\1", include) if include else None
        self.run(["restore", snapshot, "--target", target, *([f"--include=/{literal}"] if literal else [])], probe=probe)

    def ls(self, snapshot: str, path: str = "") -> list[dict]:
        """The entries directly in folder `path` of the snapshot (its top when empty), or, for a file,
        the file itself: restic's nodes (name, type, path, size, mtime, mode)."""
        folder = "/" + path.strip("/")
        nodes = self._nodes(snapshot, folder)
        if nodes or folder == "/":
            return nodes
        parent, name = posixpath.split(folder)
        return [n for n in self._nodes(snapshot, parent) if n["name"] == name]

    def _nodes(self, snapshot: str, folder: str) -> list[dict]:
        out = self.run(["--no-lock", "ls", "--json", snapshot, folder]).stdout
        found = (json.loads(line) for line in out.splitlines() if line.strip())
        return [n for n in found if n.get("struct_type") == "node" and n["path"] != folder]

    def dump(self, snapshot: str, path: str, sink: Callable[[bytes], object]) -> None:
        """The bytes of file `path` of the snapshot, to `sink` as they come."""
        self.run(["--no-lock", "dump", snapshot, "/" + path.strip("/")], sink=sink)

    def check(self, read_data_subset: str | None = None) -> None:
        """restic check (structure, and the packs of one subset read whole); raises on any error.
        Without a lock (restic 0.14's check takes an exclusive one, which would fail a backup that
        starts meanwhile): a failure while another command holds a lock (`locked`) may be a prune's
        doing, not damage."""
        args = ["--no-lock", "check"] + ([f"--read-data-subset={read_data_subset}"] if read_data_subset else [])
        self.run(args, timeout=self.stall_timeout * QUIET_COMMAND_FACTOR)

    def locked(self) -> bool:
        """Whether any restic command holds a lock on the repository now (stale locks removed first)."""
        self.run(["unlock"])
        return bool(self.run(["--no-lock", "list", "locks"]).stdout.split())
