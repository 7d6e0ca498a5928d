"""The off-site copy's lag per site (offsite.py), and its copy order, as plain functions."""

from datetime import datetime, timedelta, timezone

import pytest

from wpfarm_assets.backups.health import CRITICAL, NEW, OK, WARNING, SiteBackups
from wpfarm_assets.backups.offsite import copyable, deletable, offsite_findings, order
from wpfarm_assets.core.keys import KINDS, BackupKey

NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
SITE = "shop.example.com"


def site(*ages: tuple[str, float]) -> dict[str, SiteBackups]:
    backups = {kind: sorted(BackupKey(SITE, k, NOW - timedelta(hours=h)) for k, h in ages if k == kind)
               for kind in KINDS}
    return {SITE: SiteBackups(None, backups, {})}


@pytest.mark.parametrize("primary,copy,state,words", [
    (site(("db", 30), ("db", 6), ("files", 6)), site(("db", 30), ("db", 6), ("files", 6)), OK, "copied up to"),
    (site(("db", 30), ("db", 6)), site(("db", 30)), OK, "1 backup(s) not on the copy yet, the oldest db"),
    (site(("db", 30), ("db", 27)), site(), WARNING, "2 backup(s) not on the copy yet"),
    (site(("db", 55), ("files", 1)), site(("files", 1)), CRITICAL, "(55.0 h)"),
    (site(), site(), NEW, "nothing to copy yet"),
    ({}, site(("db", 3), ("files", 3)), CRITICAL, "the primary target holds no backup"),  # a wiped primary
    (site(), site(("db", 3)), CRITICAL, "was the primary wiped?"),
])
def test_the_lag_is_the_age_of_the_oldest_backup_the_copy_lacks(primary, copy, state, words):
    (finding,) = offsite_findings([SITE], primary, copy, NOW, 26, 50)
    assert finding.severity == state and words in finding.reason, finding


def test_data_travels_before_indexes_snapshots_and_manifests_and_transient_state_not_at_all():
    keys = [f"sites/{SITE}/db/20261207T020000Z.json", f"sites/{SITE}/restic/snapshots/{'a' * 64}",
            f"sites/{SITE}/restic/index/{'b' * 64}", f"sites/{SITE}/db/20261207T020000Z.sql.zst.gpg",
            f"sites/{SITE}/restic/data/cc/{'c' * 64}"]
    assert [k.split("/")[-2] for k in sorted(keys, key=lambda k: (order(k), k))] == ["db", "cc", "index", "snapshots",
                                                                                     "db"]
    assert not copyable(f"sites/{SITE}/restoring-db.json") and not copyable(f"sites/{SITE}/restic/locks/{'d' * 64}")
    assert copyable(f"sites/{SITE}/site.json")


def test_the_copy_lets_go_only_of_what_its_own_retention_expires():
    root = f"sites/{SITE}/db/"
    days = [NOW - timedelta(days=d) for d in range(10)]
    there = {f"{root}{t:%Y%m%dT%H%M%SZ}{ext}": None for t in days for ext in (".json", ".sql.zst.gpg")}
    checkpoint = NOW - timedelta(days=9, hours=12)  # older than 7 days
    there |= {f"{root}{checkpoint:%Y%m%dT%H%M%SZ}{ext}": None for ext in (".json", ".sql.zst.gpg", ".checkpoint")}
    binlogs = [f"binlogs/{NOW - timedelta(days=d):%Y%m%dT%H%M%SZ}-0001" for d in (1, 20, 30)]
    allowed = deletable(None, f"sites/{SITE}/", there, {}, NOW, (3, 0, 0), 14)
    kept = {k[len(root):len(root) + 16] for k in there} - {k[len(root):len(root) + 16] for k in allowed}
    assert kept == {f"{t:%Y%m%dT%H%M%SZ}" for t in days[:3]}  # 3 daily; the old checkpoint goes
    assert f"{root}{checkpoint:%Y%m%dT%H%M%SZ}.checkpoint" in allowed
    logs = {f"{b}{ext}": None for b in binlogs for ext in (".json", ".binlog.zst.gpg")}
    assert deletable(None, "binlogs/", logs, {}, NOW, (3, 0, 0), 14) == {f"{b}{ext}" for b in binlogs[1:]
                                                                        for ext in (".json", ".binlog.zst.gpg")}
