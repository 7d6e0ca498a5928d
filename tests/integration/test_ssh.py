"""The SSH source mode against a real sshd on loopback: host keys verified, streams complete."""

import hashlib
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest

from resources.ssh import CommandError, LocalRunner, SSHRunner, run
from wpfarm_assets.backups.backup import TarCounter, tar_argv
from wpfarm_assets.core.config import SSHConfig, load_config
from wpfarm_assets.definitions import build_definitions
from wpfarm_assets.demo import DemoSize, create_site_content
from wpfarm_assets.partitions import partition_range_tags


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


def established_to(port: int) -> int:
    """Open TCP connections from this machine to 127.0.0.1:port (the client ends: one per SSH connection)."""
    out = subprocess.run(["ss", "-tnH", "state", "established", "dst", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def test_a_many_site_backup_over_ssh_holds_one_connection_per_node_and_none_after(sshd, make_farm, dagster_home):
    """Both tiers read over SSH (database_node and storage_node: two nodes, here the same sshd): 12
    sites, three times what each tier runs at once, so every stream slot is reused (it was 50 sites,
    45 s more of the suite for the same proof)."""
    ssh = sshd.config()
    make_farm(12, database_ssh=ssh, storage_ssh=ssh, size=DemoSize(posts=2, post_words=20, uploads=1, upload_bytes=512))
    config = load_config()
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", [s.name for s in config.sites])
    before = established_to(sshd.port)  # other tests' runners that are still open
    most, done = 0, threading.Event()

    def sample() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, established_to(sshd.port) - before)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = build_definitions(config).resolve_job_def("back_up_sites").execute_in_process(
            instance=instance, tags=partition_range_tags(config.sites[0].name, config.sites[-1].name))
    finally:
        done.set()
        sampler.join()
    assert result.success
    assert instance.get_materialized_partitions(dg.AssetKey("database_dump")) == {s.name for s in config.sites}
    assert 1 <= most <= 2, f"{most} SSH connections open at once"
    deadline = time.monotonic() + 10
    while established_to(sshd.port) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert established_to(sshd.port) <= before
