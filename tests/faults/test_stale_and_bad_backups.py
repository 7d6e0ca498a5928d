"""Nothing stale looks fresh: a future-dated backup does not silence the age check or win a restore;
a corrupted newest backup makes restore fall back to the one before, naming the refused one, and
flags the site in status and in the findings the alerts are made of until a good backup is newer."""

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from resources.gpg import encrypt_argv
from resources.object_store import open_store
from wpfarm_assets.backups.backup import back_up_database
from wpfarm_assets.backups.health import CRITICAL, OK, backup_age, group_listing
from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import SITES, BackupKey


def local_path(key: str) -> Path:
    return Path(load_config().backup.target[len("file://"):]) / key


def findings(site: str, kind: str):
    config = load_config()
    listing = group_listing(list(open_store(config.backup.target).list(SITES)))
    return next(f for f in backup_age([site], listing, datetime.now(timezone.utc), 26, 50) if f.kind == kind)


def test_a_backup_stamped_a_year_ahead_is_flagged_and_never_restored(make_farm, dagster_home, db, capsys):
    farm = make_farm(1)
    site = farm.sites[0]["name"]
    assert main(["backup"]) == 0
    store = open_store(load_config().backup.target)
    real = list_backups(store, site, "db")[-1]
    planted = BackupKey(site, "db", real.time + timedelta(days=365))
    store.put_bytes(planted.data_key, store.get_bytes(real.data_key))
    store.put_bytes(planted.manifest_key, store.get_bytes(real.manifest_key))
    capsys.readouterr()

    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert "stamped in the future" in out and planted.stamp in out
    assert findings(site, "db").severity != OK

    scratch = f"{farm.sites[0]['database']}_r"
    try:
        assert main(["restore", site, "--kind", "db", "--to-database", scratch, "--gnupg-home", farm.keyring.home]) == 0
        assert f"from {real.data_key}" in capsys.readouterr().out
    finally:
        db.drop_database(scratch)


def test_a_corrupted_newest_backup_falls_back_and_flags_the_site(make_farm, dagster_home, db, capsys):
    farm = make_farm(1)
    site = farm.sites[0]["name"]
    assert main(["backup"]) == 0
    time.sleep(1.1)  # stamps have second resolution
    assert main(["backup"]) == 0
    store = open_store(load_config().backup.target)
    older, newest = list_backups(store, site, "db")[-2:]
    path = local_path(newest.data_key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert findings(site, "db").severity == OK  # sizes match: only reading it can tell
    capsys.readouterr()

    scratch = f"{farm.sites[0]['database']}_r"
    try:
        assert main(["restore", site, "--kind", "db", "--to-database", scratch, "--gnupg-home", farm.keyring.home]) == 0
        captured = capsys.readouterr()
        assert f"from {older.data_key}" in captured.out
        assert newest.stamp in captured.err and "sha256" in captured.err and "refused" in captured.err
        assert db.checksums(scratch) == db.checksums(farm.sites[0]["database"])

        # From now on the site is not ok, until a good backup is newer.
        finding = findings(site, "db")
        assert finding.severity == CRITICAL and newest.stamp in finding.reason
        assert main(["status"]) == 1
        assert main(["backups", site]) == 1
        assert "REFUSED" in capsys.readouterr().out
        # --at names one backup: the refused one is refused, with no fallback.
        assert main(["restore", site, "--kind", "db", "--to-database", scratch, "--at", newest.stamp,
                     "--gnupg-home", farm.keyring.home]) == 1

        time.sleep(1.1)
        assert main(["backup", site]) == 0
        assert findings(site, "db").severity == OK
    finally:
        db.drop_database(scratch)


def test_the_integrity_check_reads_one_older_dump_a_day_in_turn(make_farm, dagster_home, db):
    from wpfarm_assets.backups.health import WARNING, backup_integrity
    from wpfarm_assets.definitions import build_resources

    farm = make_farm(1)
    site = farm.sites[0]["name"]
    config = load_config()
    store = open_store(config.backup.target)
    for days_ago in (2, 1, 0):  # three nights' dumps (`wpfarm backup` would keep one a day: retention)
        back_up_database(config.sites[0], db, store, encrypt_argv(farm.keyring.fingerprint, farm.keyring.public_home),
                         farm.keyring.fingerprint, now=datetime.now(timezone.utc) - timedelta(days=days_ago))
    older = list_backups(store, site, "db")[:-1]
    bad = local_path(older[1].data_key)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))  # same size: only reading it finds it

    resource = build_resources(load_config())["object_store"].process_config_and_initialize()

    def check(day: datetime):
        listing = group_listing(list(store.list(SITES)))
        return next(f for f in backup_integrity(store, [site], listing, resource.repository, day) if f.kind == "db")

    base = datetime.now(timezone.utc)
    other_day = base + timedelta(days=(0 - base.toordinal()) % 2)  # ordinal even: the first older dump
    assert check(other_day).severity == OK
    found = check(other_day + timedelta(days=1))  # the next day: the second
    assert found.severity == WARNING and older[1].stamp in found.reason and "sha256" in found.reason
    assert older[1] in group_listing(list(store.list(SITES)))[site].refused
