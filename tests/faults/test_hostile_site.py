"""What a site's own users can do to its backups: a table name with a tab and a newline in it, a
2 GiB sparse file (restic 0.14 reads its holes as zeros: a larger one costs time, not storage).
Neither may stop the site's backups or fill the backup target with zeros."""

import os

from resources.object_store import open_store
from resources.ssh import LocalRunner
from wpfarm_assets.backups.restore import list_backups, restore_files
from wpfarm_assets.backups.verify import read_manifest
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_resources

EVIL = "evil\ttab\nname"


def test_a_table_named_with_a_tab_and_a_newline_is_backed_up(make_farm, dagster_home, db):
    farm = make_farm(1)
    database = farm.sites[0]["database"]
    db.execute(f"CREATE TABLE `{database}`.`{EVIL}` (id INT PRIMARY KEY); "
               f"INSERT INTO `{database}`.`{EVIL}` VALUES (1), (2);\n")
    assert main(["backup"]) == 0
    store = open_store(load_config().backup.target)
    manifest = read_manifest(store, list_backups(store, farm.sites[0]["name"], "db")[-1])
    assert manifest.tables[EVIL] == 2


def test_a_2_gib_sparse_file_is_stored_and_restored_as_a_hole(make_farm, dagster_home, keyring, tmp_path):
    farm = make_farm(1)
    sparse = farm.site_root(0) / "wp-content" / "uploads" / "hole.bin"
    sparse.parent.mkdir(parents=True, exist_ok=True)
    with open(sparse, "wb") as f:
        f.truncate(2 << 30)
        f.seek(1 << 30)
        f.write(b"a byte in the middle")
    assert main(["backup"]) == 0
    config = load_config()
    store = open_store(config.backup.target)
    manifest = read_manifest(store, list_backups(store, farm.sites[0]["name"], "files")[-1])
    assert manifest.stored_bytes < 64 << 20, manifest.stored_bytes  # not 2 GiB of zeros (restic: one chunk, compressed)

    resource = build_resources(config)["object_store"].process_config_and_initialize()
    restore_files(config.sites[0], store, LocalRunner(), keyring.home, to_path=str(tmp_path / "restored"),
                  repository=resource.repository(config.sites[0].name))
    restored = tmp_path / "restored" / "wp-content" / "uploads" / "hole.bin"
    assert os.path.getsize(restored) == 2 << 30
    assert os.stat(restored).st_blocks * 512 < 64 << 20  # restored as a hole too
    with open(restored, "rb") as f:
        f.seek(1 << 30)
        assert f.read(20) == b"a byte in the middle"
