"""`wpfarm backup` with each site's backup replaced by nothing: what the orchestration costs alone
(the command, its runs, the `sites` partitions, the planned and materialization events), on the
same instance configuration. The nightly benchmark runs it as its `bookkeeping` row.

    WPFARM_CONFIG=... DAGSTER_HOME=... .venv/bin/python -m benchmarks.bookkeeping
"""

import sys
from datetime import datetime, timezone

import wpfarm_assets.backups.assets as assets
from wpfarm_assets.backups.backup import Backup
from wpfarm_assets.cli import main
from wpfarm_assets.core.keys import BackupKey
from wpfarm_assets.core.manifest import Manifest


def nothing(kind: str):
    def backed_up(site, *args, **kwargs) -> Backup:
        key = BackupKey(site.name, kind, datetime.now(timezone.utc))
        now = datetime.now(timezone.utc).isoformat()
        content = {"tables": {}} if kind == "db" else {"files": 0}
        return Backup(key, Manifest(site=site.name, kind=kind, object_key=key.data_key, started_at=now,
                                    finished_at=now, plaintext_bytes=0, stored_bytes=0, sha256="",
                                    duration_seconds=0.0, compression="none", key_fingerprint="", source="nowhere",
                                    **content))
    return backed_up


if __name__ == "__main__":
    assets._back_up_database, assets._back_up_files = nothing("db"), nothing("files")
    sys.exit(main(["backup"]))
