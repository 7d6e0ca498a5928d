"""The off-site copy's lag per site (offsite.py), and its copy order, as plain functions."""

from datetime import datetime, timedelta, timezone

import pytest

from wpfarm_assets.backups.health import CRITICAL, NEW, OK, WARNING, SiteBackups
from wpfarm_assets.backups.offsite import copyable, newest_backups, offsite_findings, order
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


def test_the_newest_backup_of_each_kind_is_what_a_wipe_would_remove():
    keys = [f"sites/{SITE}/db/2026120{d}T020000Z.json" for d in (5, 6, 7)] + [
        f"sites/{SITE}/files/20261201T020000Z.json", "binlogs/20261207T020000Z-0001.json",
        "binlogs/20261207T030000Z-0001.json", "binlogs/gaps/20261207T030000Z.json"]
    assert newest_backups(keys) == {f"sites/{SITE}/db/20261207T020000Z.json", f"sites/{SITE}/files/20261201T020000Z.json",
                                    "binlogs/20261207T030000Z-0001.json"}
