"""A forged files backup (anyone who can write to the bucket and holds the public key can plant
one) restores nothing of its device nodes, FIFOs, set-id files or paths out of its folder, and a
refused restore leaves the target exactly as it was."""

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
import zstandard

from resources.gpg import encrypt_argv
from resources.object_store import open_store
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import archive_files
from wpfarm_assets.backups.restore import RestoreError, restore_files
from wpfarm_assets.backups.verify import read_manifest, tree_digest
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import BackupKey


def forged_tar(member: tarfile.TarInfo, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        ok = tarfile.TarInfo("wp-content/index.php")
        body = b"<?php // fine\n"
        ok.size = len(body)
        tar.addfile(ok, io.BytesIO(body))
        data = b"x" if member.isreg() else None
        if data:
            member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize("forged,message", [
    (member("wp-content/suid", mode=0o4755), "set-user/group-id"),
    (member("wp-content/null", tarfile.CHRTYPE, 0o666), "character device"),
    (member("wp-content/disk", tarfile.BLKTYPE, 0o666), "block device"),
    (member("wp-content/pipe", tarfile.FIFOTYPE), "FIFO"),
    (member("wp-content/../../evil.php"), "outside its folder"),
    (member("wp-content/link", tarfile.SYMTYPE, link="/etc/shadow"), "out of its folder"),
    (member("wp-content/up", tarfile.SYMTYPE, link="../../etc"), "out of its folder"),
    (member("wp-content/" + "long/" * 30 + "link", tarfile.SYMTYPE, link="/etc/" + "x" * 120), "out of its folder"),
])
def test_a_forged_archive_restores_nothing_and_leaves_the_target_as_it_was(backed_up, tmp_path, keyring, forged,
                                                                          message):
    plant_and_refuse(*backed_up, keyring, tmp_path, forged_tar(forged), message)


@pytest.fixture
def backed_up(make_farm, keyring):
    """(site, store, its real files backup): what a forgery is planted next to."""
    make_farm(1)
    config = load_config()
    site = config.sites[0]
    store = open_store(config.backup.target)
    real = archive_files(site, LocalRunner(), store, encrypt_argv(keyring.fingerprint, keyring.public_home),
                         keyring.fingerprint)
    return site, store, real


def plant(site, store, real, keyring, plain: bytes, seconds: int = 5) -> BackupKey:
    """A newer files backup holding `plain`, encrypted to the farm's public key, with a manifest that matches."""
    encrypted = subprocess.run(encrypt_argv(keyring.fingerprint, keyring.public_home),
                               input=zstandard.ZstdCompressor().compress(plain), capture_output=True, check=True).stdout
    key = BackupKey(site.name, "files", real.key.time + timedelta(seconds=seconds))
    store.put_bytes(key.data_key, encrypted)
    manifest = read_manifest(store, real.key).model_copy(update={
        "object_key": key.data_key, "sha256": hashlib.sha256(encrypted).hexdigest(), "stored_bytes": len(encrypted)})
    store.put_bytes(key.manifest_key, manifest.to_bytes())
    return key


def plant_and_refuse(site, store, real, keyring, tmp_path, plain: bytes, message: str) -> None:
    key = plant(site, store, real, keyring, plain)
    target = tmp_path / "restore-target"
    (target / "wp-content").mkdir(parents=True)
    (target / "wp-content" / "keep.txt").write_text("what was there\n")
    before = tree_digest(target)

    with pytest.raises(RestoreError, match=message):
        restore_files(site, store, LocalRunner(), keyring.home, to_path=str(target), at=key.stamp)

    assert tree_digest(target) == before
    assert sorted(p.name for p in target.iterdir()) == ["wp-content"]  # no staging folder left
    assert not (tmp_path / "evil.php").exists()


def pax_size_desync() -> bytes:
    """A pax record `size=0` before a member whose ustar size says 1024: a walker that ignores pax
    headers skips the FIFO's header as data; tar does not."""
    fifo = member("wp-content/pipe", tarfile.FIFOTYPE)
    blocks = fifo.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    decoy = tarfile.TarInfo("wp-content/decoy")
    decoy.size = 1024
    pax = tarfile.TarInfo._create_pax_generic_header({"size": "0"}, tarfile.XHDTYPE, "utf-8")
    ok = tarfile.TarInfo("wp-content/index.php")
    ok.size = 3
    body = ok.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape") + b"ok\n".ljust(512, b"\0")
    return body + pax + decoy.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape") + blocks + b"\0" * 1024


def test_a_pax_size_record_cannot_hide_a_fifo(backed_up, tmp_path, keyring):
    plant_and_refuse(*backed_up, keyring, tmp_path, pax_size_desync(), "FIFO")


def test_what_sites_really_hold_restores(make_farm, tmp_path, keyring):
    """A setgid uploads folder and a relative link that stays inside are a site's, not a forgery."""
    make_farm(1)
    config = load_config()
    site = config.sites[0]
    root = tmp_path / "sites" / site.name
    uploads = root / "wp-content" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    uploads.chmod(0o2775)
    (root / "wp-content" / "themes" / "current").symlink_to("../themes")
    store = open_store(config.backup.target)
    archive_files(site, LocalRunner(), store, encrypt_argv(keyring.fingerprint, keyring.public_home),
                  keyring.fingerprint)
    restored = tmp_path / "restored"
    restore_files(site, store, LocalRunner(), keyring.home, to_path=str(restored))
    assert (restored / "wp-content" / "themes" / "current").is_symlink()
    assert (restored / "wp-content" / "uploads").is_dir()


@pytest.mark.parametrize("plant,message", [
    (lambda c: (c / "suid").write_bytes(b"x") and (c / "suid").chmod(0o4755), "set-user/group-id"),
    (lambda c: os.mkfifo(c / "pipe"), "FIFO"),
    (lambda c: os.mknod(c / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3)), "character device"),
    (lambda c: (c / "link").symlink_to("/etc/shadow"), "out of its folder"),
    (lambda c: (c / "up").symlink_to("../../../etc"), "out of its folder"),
])
def test_a_forged_snapshot_restores_nothing_and_leaves_the_target_as_it_was(make_farm, tmp_path, plant, message):
    """Who holds the file store's password (every backup host) can plant a snapshot too: restic
    restores it into the staging folder, and the check there refuses it before anything is copied."""
    from resources.object_store import ObjectStoreResource
    from wpfarm_assets.backups.backup import back_up_files

    make_farm(1)
    config = load_config()
    site = config.sites[0]
    resource = ObjectStoreResource(target=config.backup.target, restic_password=os.environ["WPFARM_RESTIC_PASSWORD"])
    store, repository = resource.store(), resource.repository(site.name)
    plant(Path(site.content_path))
    back_up_files(site, LocalRunner(), store, repository)
    target = tmp_path / "target"
    (target / "wp-content").mkdir(parents=True)
    (target / "wp-content" / "keep.txt").write_text("the target as it was")
    before = tree_digest(target)
    with pytest.raises(RestoreError, match=message):
        restore_files(site, store, LocalRunner(), None, to_path=str(target), repository=repository)
    assert tree_digest(target) == before and sorted(os.listdir(target)) == ["wp-content"]
