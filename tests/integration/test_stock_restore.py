"""A backup restores with stock tools alone: the README's own shell block, run verbatim."""

import os
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from resources.gpg import encrypt_argv
from resources.object_store import open_store
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import archive_files
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    match = re.search(r"<!-- stock-restore -->\n```sh\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md lost its stock-restore block"
    return match.group(1)


def test_readme_procedure_restores_tables_and_files_exactly(make_farm, dagster_home, db, tmp_path):
    """Both branches of the block, on one farm: a restic snapshot, then a tar archive from before the
    file store (made the newest files backup)."""
    farm = make_farm(1)
    site = farm.sites[0]
    assert main(["backup"]) == 0
    target_db = "wpt_stock_restore"
    for files_format in ("snapshot", "archive"):
        if files_format == "archive":  # the newest files backup is an older wpfarm's archive
            config = load_config()
            archive_files(config.sites[0], LocalRunner(), open_store(config.backup.target),
                          encrypt_argv(farm.keyring.fingerprint, farm.keyring.public_home), farm.keyring.fingerprint,
                          now=datetime.now(timezone.utc) + timedelta(minutes=1))
        db.drop_database(target_db)
        env = {**os.environ, "BACKUPS": str(farm.workdir / "backups"), "SITE": site["name"], "DB": target_db,
               "DEST": str(tmp_path / f"stock-{files_format}"), "GNUPGHOME": farm.keyring.home}
        try:
            done = subprocess.run(["bash", "-c", readme_block()], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (files_format, done.stderr)
            assert ("restoring <Snapshot" in done.stdout) == (files_format == "snapshot"), files_format
            assert db.checksums(target_db) == db.checksums(site["database"]), files_format
            assert tree_digest(tmp_path / f"stock-{files_format}") == tree_digest(farm.site_root(0)), files_format
        finally:
            db.drop_database(target_db)
