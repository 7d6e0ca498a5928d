"""Failures are loud and leave nothing that looks like a backup; other sites in the run still succeed."""

import subprocess
from pathlib import Path

import dagster as dg
import pytest

from resources.gpg import encrypt_argv
from resources.mariadb import MariaDB
from resources.object_store import open_store
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import BackupError, archive_files, back_up_database
from wpfarm_assets.backups.pipeline import StreamError, back_up_stream
from wpfarm_assets.backups.restore import RestoreError, list_backups, restore_database
from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_definitions
from wpfarm_assets.demo import DemoSize
from wpfarm_assets.partitions import partition_range_tags, sites


def run_backup_job(config):
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", [s.name for s in config.sites])
    job = build_definitions(config).resolve_job_def("back_up_sites")
    tags = partition_range_tags(config.sites[0].name, config.sites[-1].name)
    return instance, job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)


def failure_messages(result) -> dict[str, str]:
    return {e.step_key: e.step_failure_data.error.message for e in result.all_events if e.is_step_failure}


def all_keys(store) -> list[str]:
    return [o.key for o in store.list("sites/")]


def test_missing_database_fails_that_site_only(make_farm, dagster_home, db):
    make_farm(3)
    config = load_config()
    broken, fine = config.sites[1], [config.sites[0], config.sites[2]]
    db.drop_database(broken.database)

    instance, result = run_backup_job(config)

    assert not result.success
    message = failure_messages(result)["database_dump"]
    assert broken.name in message and "does not exist" in message
    assert all(s.name not in message for s in fine)
    store = open_store(config.backup.target)
    assert list_backups(store, broken.name, "db") == []
    assert not [k for k in all_keys(store) if f"sites/{broken.name}/db/" in k]  # no object, no manifest
    assert all(len(list_backups(store, s.name, "db")) == 1 for s in fine)
    assert all(len(list_backups(store, s.name, "files")) == 1 for s in config.sites)
    materialized = instance.get_materialized_partitions(dg.AssetKey("database_dump"))
    assert materialized == {s.name for s in fine}
    assert instance.get_materialized_partitions(dg.AssetKey("file_archive")) == {s.name for s in config.sites}
    status = instance.get_status_by_partition(dg.AssetKey("database_dump"), [s.name for s in config.sites], sites)
    assert {name for name, st in status.items() if st == dg.AssetPartitionStatus.FAILED} == {broken.name}


def test_missing_public_key_fails_naming_each_site_and_the_key(make_farm, dagster_home):
    """The dumps need the key; the file store does not (restic encrypts with its own password)."""
    make_farm(2, gpg_recipient="FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF")
    config = load_config()
    _, result = run_backup_job(config)
    assert not result.success
    messages = failure_messages(result)
    assert list(messages) == ["database_dump"]
    assert "public key" in messages["database_dump"] and "FFFFFFFF" in messages["database_dump"]
    assert all(site.name in messages["database_dump"] for site in config.sites)
    store = open_store(config.backup.target)
    assert [k for k in all_keys(store) if "/db/" in k and "/restic/" not in k] == []  # a restic pack may be data/db…
    assert all(len(list_backups(store, s.name, "files")) == 1 for s in config.sites)


def test_unreachable_s3_target_fails_loudly_and_writes_nothing(make_farm, keyring, db):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_farm(1, target="s3://wpfarm-gone/farm", s3_endpoint_url=f"http://127.0.0.1:{port}")
    config = load_config()
    store = open_store(config.backup.target, config.backup.s3_endpoint_url)
    with pytest.raises(BackupError, match=rf"site {config.sites[0].name}: database backup failed: cannot (upload|list)"):
        back_up_database(config.sites[0], db, store, encrypt_argv(keyring.fingerprint, keyring.public_home), keyring.fingerprint)


def test_unwritable_local_target_fails_loudly(make_farm, keyring, db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    make_farm(1, target=f"file://{blocker}/backups")
    config = load_config()
    with pytest.raises(BackupError, match="cannot write"):
        archive_files(config.sites[0], LocalRunner(), open_store(config.backup.target),
                      encrypt_argv(keyring.fingerprint, keyring.public_home), keyring.fingerprint)


@pytest.mark.parametrize("target_kind", ["file", "s3"])
def test_dump_killed_halfway_leaves_no_object(make_farm, keyring, db, s3, target_kind):
    extra = {"target": f"s3://{s3.new_bucket()}/farm", "s3_endpoint_url": s3.endpoint} if target_kind == "s3" else {}
    make_farm(1, size=DemoSize(posts=4000, uploads=1), **extra)  # a dump of several MiB
    config = load_config()
    store = open_store(config.backup.target, config.backup.s3_endpoint_url)
    proc = db.dump(config.sites[0].database)
    seen = []

    def kill_after_first_chunk(chunk: bytes) -> None:
        seen.append(len(chunk))
        if len(seen) == 1:
            proc.kill()

    with pytest.raises(StreamError, match="mariadb-dump exited with status -9"):
        back_up_stream(proc, encrypt_argv(keyring.fingerprint, keyring.public_home), store, "sites/x.example/db/k", kill_after_first_chunk)
    assert all_keys(store) == []
    if target_kind == "s3":
        uploads = s3.client().list_multipart_uploads(Bucket=config.backup.target[5:].split("/")[0])
        assert uploads.get("Uploads", []) == []


def test_dump_that_ends_early_without_an_error_is_refused(make_farm, keyring, db, tmp_path):
    """A dump that exits 0 but stops short (no completion marker) must not become a backup."""
    make_farm(1)
    config = load_config()
    site = config.sites[0]
    full = tmp_path / "full.sql"
    full.write_bytes(subprocess.run(db.dump_argv(site.database), capture_output=True, check=True).stdout)

    class TruncatingMariaDB(MariaDB):
        def dump_argv(self, database, gtid=False):
            return ["head", "-c", str(full.stat().st_size // 2), str(full)]

    store = open_store(config.backup.target)
    with pytest.raises(BackupError, match="completion marker"):
        back_up_database(site, TruncatingMariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None), store,
                         encrypt_argv(keyring.fingerprint, keyring.public_home), keyring.fingerprint)
    assert all_keys(store) == []


def test_restore_needs_the_private_key_and_refuses_a_corrupted_object(make_farm, keyring, db):
    make_farm(1)
    config = load_config()
    site = config.sites[0]
    store = open_store(config.backup.target)
    backup = back_up_database(site, db, store, encrypt_argv(keyring.fingerprint, keyring.public_home), keyring.fingerprint)
    scratch = "wpt_never_created"
    db.drop_database(scratch)

    with pytest.raises(Exception, match="secret key"):  # a worker's keyring holds only the public key
        restore_database(site, store, db, keyring.public_home, to_database=scratch)

    path = Path(config.backup.target[len("file://"):]) / backup.key.data_key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RestoreError, match="does not match its manifest.* refusing to restore"):
        restore_database(site, store, db, keyring.home, to_database=scratch)
    assert not db.database_exists(scratch)


def test_an_encryption_failure_mid_stream_fails_fast_instead_of_hanging(keyring, tmp_path):
    """gpg refusing the key (expired, say) must stop the whole chain; the source must not block forever."""
    import signal

    from resources.object_store import LocalStore
    from resources.ssh import LocalRunner

    source = LocalRunner().start(["head", "-c", str(64 << 20), "/dev/urandom"])  # far more than the pipes hold
    refusing = encrypt_argv("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", keyring.public_home)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("the pipeline hung")))
    signal.alarm(60)
    try:
        with pytest.raises(StreamError, match="gpg exited with status 2"):
            back_up_stream(source, refusing, LocalStore(tmp_path), "sites/x.example/db/k")
    finally:
        signal.alarm(0)
    assert list(LocalStore(tmp_path).list("sites/")) == []


def test_a_failure_ending_the_zstd_frame_commits_nothing(keyring, tmp_path, monkeypatch):
    """Compression runs in the pump thread, with no exit status of its own: the end of the frame
    is part of the stream, and if writing it fails the object is refused, not stored truncated."""
    import zstandard

    from resources.object_store import LocalStore

    real = zstandard.ZstdCompressor

    class FailingAtTheEnd:
        def __init__(self, **options):
            self._stream = real(**options).compressobj()

        def compressobj(self):
            return self

        def compress(self, chunk: bytes) -> bytes:
            return self._stream.compress(chunk)

        def flush(self) -> bytes:
            raise zstandard.ZstdError("simulated failure ending the frame")

    monkeypatch.setattr(zstandard, "ZstdCompressor", FailingAtTheEnd)
    source = LocalRunner().start(["head", "-c", str(4 << 20), "/dev/urandom"])
    with pytest.raises(StreamError, match="simulated failure ending the frame"):
        back_up_stream(source, encrypt_argv(keyring.fingerprint, keyring.public_home), LocalStore(tmp_path),
                       "sites/x.example/db/k")
    assert list(LocalStore(tmp_path).list("sites/")) == []
