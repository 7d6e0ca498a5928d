"""Site content survives a round trip exactly: both targets, both source modes, through the CLI."""

import shutil

import pytest

from resources.object_store import open_store
from wpfarm_assets.backups.restore import list_backups, read_manifest
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main


@pytest.mark.parametrize("mode", ["local", "ssh"])
@pytest.mark.parametrize("target_kind", ["file", "s3"])
def test_drop_delete_restore_gives_identical_tables_and_files(make_farm, dagster_home, s3, sshd, db, mode, target_kind):
    ssh = sshd.config() if mode == "ssh" else None
    extra = {}
    if target_kind == "s3":
        extra = {"target": f"s3://{s3.new_bucket()}/farm", "s3_endpoint_url": s3.endpoint}
    farm = make_farm(2, database_ssh=ssh, storage_ssh=ssh, **extra)
    site = farm.sites[1]
    root = farm.site_root(1)
    checksums, tree = db.checksums(site["database"]), tree_digest(root)

    assert main(["backup"]) == 0

    store = open_store(extra.get("target") or f"file://{farm.workdir / 'backups'}", extra.get("s3_endpoint_url"))
    db_backup, files_backup = list_backups(store, site["name"], "db"), list_backups(store, site["name"], "files")
    assert len(db_backup) == len(files_backup) == 1
    manifest = read_manifest(store, db_backup[0])
    assert manifest.source == (f"{sshd.user}@127.0.0.1:{sshd.port}" if ssh else "local")
    assert sum(manifest.tables.values()) > 0
    assert read_manifest(store, files_backup[0]).files == tree[1]

    db.drop_database(site["database"])
    shutil.rmtree(root / "wp-content")
    (root / "wp-config.php").unlink()

    assert main(["restore", site["name"], "--gnupg-home", farm.keyring.home]) == 0
    assert db.checksums(site["database"]) == checksums
    assert tree_digest(root) == tree


def test_restore_to_another_database_and_path_leaves_the_site_alone(make_farm, dagster_home, db, tmp_path):
    farm = make_farm(1)
    site = farm.sites[0]
    assert main(["backup", site["name"]]) == 0
    db.query(f"INSERT INTO {site['database']}.wp_options (option_name, option_value) VALUES ('after_backup', 'x')")
    live = db.checksums(site["database"])
    scratch = "wpt_scratch_restore"
    db.drop_database(scratch)
    try:
        assert main(["restore", site["name"], "--to-database", scratch, "--to-path", str(tmp_path / "copy"),
                     "--gnupg-home", farm.keyring.home]) == 0
        assert db.checksums(site["database"]) == live  # untouched
        restored = db.checksums(scratch)
        assert restored.keys() == live.keys() and restored["wp_options"] != live["wp_options"]
        assert tree_digest(tmp_path / "copy") == tree_digest(farm.site_root(0))
    finally:
        db.drop_database(scratch)


def test_restore_by_date_picks_the_newest_backup_of_that_day(make_farm, dagster_home, db):
    from datetime import datetime, timezone

    from resources.gpg import encrypt_argv
    from resources.mariadb import MariaDB
    from resources.ssh import LocalRunner
    from wpfarm_assets.backups.backup import back_up_database
    from wpfarm_assets.core.config import load_config

    farm = make_farm(1)
    config = load_config()
    site = config.sites[0]
    store = open_store(config.backup.target)
    enc = encrypt_argv(farm.keyring.fingerprint, farm.keyring.public_home)
    client = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
    marks = {}
    for stamp in ["2026-03-01T01:00", "2026-03-01T23:00", "2026-03-02T01:00"]:
        db.query(f"UPDATE {site.database}.wp_options SET option_value = '{stamp}' WHERE option_name = 'blogname'")
        when = datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc)
        back_up_database(site, client, store, enc, farm.keyring.fingerprint, now=when)
        marks[stamp] = db.checksums(site.database)["wp_options"]
    assert main(["restore", site.name, "--kind", "db", "--date", "2026-03-01", "--gnupg-home", farm.keyring.home]) == 0
    assert db.checksums(site.database)["wp_options"] == marks["2026-03-01T23:00"]
    assert main(["restore", site.name, "--kind", "db", "--gnupg-home", farm.keyring.home]) == 0
    assert db.checksums(site.database)["wp_options"] == marks["2026-03-02T01:00"]
    assert main(["restore", site.name, "--kind", "db", "--date", "2026-02-28", "--gnupg-home", farm.keyring.home]) == 1
