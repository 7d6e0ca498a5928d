"""The file store's faults stay loud and lose nothing: restic killed mid-backup, a wrong repository
password, a repository locked by another restic. Each time the site fails naming the cause, no
manifest is written, its previous snapshot is untouched (and restorable), and other sites succeed.
(An S3 outage: tests/faults/test_s3_outage.py.)"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from resources.object_store import ObjectStoreResource, open_store
from resources.restic import site_password
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import BackupError, back_up_files
from wpfarm_assets.backups.restore import list_backups, restore_files
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import repository_prefix, snapshot_ids


def snapshots(store, site: str) -> set[str]:
    return snapshot_ids((o.key for o in store.list(repository_prefix(site))), site)


def restic_env(site: str) -> dict:
    return {**os.environ, "RESTIC_PASSWORD": site_password(os.environ["WPFARM_RESTIC_PASSWORD"], site)}


def repository_path(farm, site: str) -> str:
    return str(farm.workdir / "backups" / repository_prefix(site))


def assert_untouched(farm, store, site: dict, before: set[str], backups_before: int, tmp_path: Path) -> None:
    assert snapshots(store, site["name"]) == before
    assert len(list_backups(store, site["name"], "files")) == backups_before  # no manifest written
    config = load_config()
    resource = ObjectStoreResource(target=config.backup.target, restic_password=os.environ["WPFARM_RESTIC_PASSWORD"])
    target = tmp_path / f"restored-{site['name']}"
    restore_files(config.site(site["name"]), store, LocalRunner(), None, to_path=str(target),
                  repository=resource.repository(site["name"]))
    assert tree_digest(target) == tree_digest(Path(site["content_path"]).parent)


def test_restic_killed_mid_backup_fails_the_site_and_the_next_backup_works(make_farm, dagster_home, tmp_path):
    farm = make_farm(1)
    site = farm.sites[0]
    assert main(["backup"]) == 0
    store = open_store(load_config().backup.target)
    before = snapshots(store, site["name"])
    big = Path(site["content_path"]) / "uploads" / "big.bin"
    with open(big, "wb") as out:  # enough that restic is still reading it when it is killed
        for _ in range(400):
            out.write(os.urandom(1 << 20))
    config = load_config()
    resource = ObjectStoreResource(target=config.backup.target, restic_password=os.environ["WPFARM_RESTIC_PASSWORD"])
    killed = []

    def kill_restic() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[0].endswith(b"restic") and b"backup" in argv and repository_path(farm, site["name"]).encode() in argv:
                    time.sleep(0.5)
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_restic)
    killer.start()
    with pytest.raises(BackupError, match=r"files backup failed: restic backup exited with status -9") as failure:
        back_up_files(config.sites[0], LocalRunner(), store, resource.repository(site["name"]))
    killer.join()
    assert killed and site["name"] in str(failure.value)
    big.unlink()
    assert_untouched(farm, store, site, before, 1, tmp_path)
    resource.repository(site["name"]).prune()  # the dead restic's lock does not block a prune (exclusive)
    assert main(["backup"]) == 0  # nor the next backup
    assert len(list_backups(store, site["name"], "files")) == 2


def two_sites_backed_up(make_farm):
    """(farm, the site the fault is for, the other, the store, the first site's snapshots)."""
    farm = make_farm(2)
    assert main(["backup"]) == 0
    store = open_store(load_config().backup.target)
    return farm, *farm.sites, store, snapshots(store, farm.sites[0]["name"])


def fails_alone(capsys, broken: dict, good: dict, cause: str) -> None:
    capsys.readouterr()
    assert main(["backup"]) == 1
    err = capsys.readouterr().err
    assert f"site {broken['name']}: files backup failed: restic" in err and cause in err
    assert good["name"] not in err


def test_a_wrong_repository_password_fails_that_site_only(make_farm, dagster_home, tmp_path, capsys):
    farm, bad, good, store, before = two_sites_backed_up(make_farm)
    new_password = tmp_path / "other-password"
    new_password.write_text("not the derived password")
    subprocess.run(["restic", "-r", repository_path(farm, bad["name"]), "key", "passwd", "--new-password-file",
                    str(new_password)], env=restic_env(bad["name"]), check=True, capture_output=True)
    fails_alone(capsys, bad, good, "wrong password")
    assert len(list_backups(store, good["name"], "files")) == 2
    assert snapshots(store, bad["name"]) == before and len(list_backups(store, bad["name"], "files")) == 1


def test_a_locked_repository_fails_that_site_naming_the_lock(make_farm, dagster_home, tmp_path, capsys):
    farm, locked, good, store, before = two_sites_backed_up(make_farm)
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    # `restic key passwd` takes the exclusive lock, then waits for its new password on the FIFO.
    holder = subprocess.Popen(["restic", "-r", repository_path(farm, locked["name"]), "key", "passwd",
                               "--new-password-file", str(fifo)], env=restic_env(locked["name"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        locks = Path(repository_path(farm, locked["name"])) / "locks"
        deadline = time.monotonic() + 30
        while not any(locks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        fails_alone(capsys, locked, good, "locked exclusively")
    finally:
        holder.kill()
        holder.wait()
    assert len(list_backups(store, good["name"], "files")) == 2
    assert_untouched(farm, store, locked, before, 1, tmp_path)
