"""The SSH source mode against a real sshd on loopback: host keys verified, streams complete."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from resources.ssh import CommandError, LocalRunner, SSHRunner, run
from wpfarm_assets.backup import TarCounter, tar_argv
from wpfarm_assets.config import SSHConfig
from wpfarm_assets.demo import DemoSize, create_site_content


def test_unknown_host_key_is_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(CommandError, match="cannot reach"):
        SSHRunner(SSHConfig(**{**sshd.config(), "known_hosts": str(empty)}))


def test_a_wrong_host_key_is_refused(sshd, tmp_path):
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    with pytest.raises(CommandError, match="cannot reach"):
        SSHRunner(SSHConfig(**{**sshd.config(), "known_hosts": str(other)}))


def test_arguments_reach_the_remote_command_verbatim(sshd):
    runner = SSHRunner(SSHConfig(**sshd.config()))
    hostile = ["a;id", "$(id)", "`id`", "x y", "'\"", "*"]
    assert run(runner, ["printf", "%s\\n", *hostile]).splitlines() == hostile


def test_parallel_streams_over_one_connection_arrive_complete(sshd, tmp_path):
    """Regression: the remote side may close before its last data is read; none of it may be lost."""
    content = create_site_content(tmp_path / "site", "x.example", DemoSize(posts=30, uploads=3), 1)
    local = LocalRunner().start(tar_argv(str(content), True))
    expected = b""
    while chunk := local.read():
        expected += chunk
    assert local.wait() == 0
    runner = SSHRunner(SSHConfig(**sshd.config()))

    def stream(_):
        proc = runner.start(tar_argv(str(content), True))
        counter, digest = TarCounter(), hashlib.sha256()
        while chunk := proc.read():
            counter.feed(chunk)
            digest.update(chunk)
        assert proc.wait() == 0
        return counter.complete, digest.hexdigest()

    with ThreadPoolExecutor(4) as pool:
        results = set(pool.map(stream, range(24)))
    assert results == {(True, hashlib.sha256(expected).hexdigest())}


def test_more_parallel_streams_than_sshd_allows_sessions_all_complete(sshd):
    """OpenSSH serves 10 channels per connection (MaxSessions) and frees them late; 16 parallel
    streams of exists + command over one runner must all finish (they failed with "Connect failed")."""
    runner = SSHRunner(SSHConfig(**sshd.config()))

    def one(i: int) -> str:
        assert runner.exists("/etc/hostname")
        return run(runner, ["sh", "-c", f"sleep 0.3; echo {i}"]).strip()

    try:
        with ThreadPoolExecutor(16) as pool:
            assert sorted(pool.map(one, range(48)), key=int) == [str(i) for i in range(48)]
    finally:
        runner.close()
