"""Retention of the binary-log archive: what a kept recovery window needs stays, the rest goes."""

from datetime import datetime, timedelta, timezone

from resources.object_store import LocalStore
from wpfarm_assets.backups.pitr import binlog_retention
from wpfarm_assets.core.config import Site
from wpfarm_assets.core.keys import BINLOG_SUFFIX, BackupKey, binlog_stem
from wpfarm_assets.core.manifest import BinlogManifest, Manifest

NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
SITES = [Site(name=n, database=f"wp_{n}", content_path=f"/srv/sites/{n}/wp-content") for n in ("a", "b", "c")]


def dump(store: LocalStore, site: str, when: datetime, seq: int | None) -> None:
    key = BackupKey(site, "db", when)
    store.put_bytes(key.data_key, b"x")
    store.put_bytes(key.manifest_key, Manifest(
        site=site, kind="db", started_at=when.isoformat(), finished_at=when.isoformat(), plaintext_bytes=1,
        stored_bytes=1, duration_seconds=1, compression="zstd", source="local", object_key=key.data_key, sha256="0",
        **({"gtid": f"100-1-{seq}", "gtid_domain": 100} if seq is not None else {})).to_bytes())


def log(store: LocalStore, when: datetime, start: int, end: int) -> str:
    stem = binlog_stem(when, 0)
    store.put_bytes(stem + BINLOG_SUFFIX, b"log")
    store.put_bytes(stem + ".json", BinlogManifest(
        node="n:1", file="binlog.000001", domain=100, start_seq=start, end_seq=end, transactions=end - start,
        first_event_at=when.isoformat(), last_event_at=when.isoformat(), archived_at=when.isoformat(),
        object_key=stem + BINLOG_SUFFIX, sha256="0", plaintext_bytes=3, stored_bytes=3, key_fingerprint="F").to_bytes())
    return stem


def test_logs_before_every_kept_window_go_and_the_rest_stay(tmp_path):
    store = LocalStore(tmp_path)
    days = [NOW - timedelta(days=d) for d in range(20, -1, -1)]  # a log a day for 21 days, 100 writes each
    stems = [log(store, day, 100 * i, 100 * (i + 1)) for i, day in enumerate(days)]
    for i, day in enumerate(days):  # nightly dumps: a at each day's end, b only from day 10 on
        dump(store, "a", day + timedelta(minutes=1), 100 * (i + 1))
        if i >= 10:
            dump(store, "b", day + timedelta(minutes=1), 100 * (i + 1))
    dump(store, "c", days[0], None)  # a site from before binary logging: it holds nothing back
    deleted = binlog_retention(store, SITES, pitr_days=14, now=NOW)
    # 14 days ago (day 6) a restores from its dump of day 5 (seq 600), b from its oldest (day 10,
    # seq 1100): the logs ending at or before seq 600 go (days 0..5); day 6's is needed from there.
    assert sorted(deleted) == sorted([s + ".json" for s in stems[:6]] + [s + BINLOG_SUFFIX for s in stems[:6]])
    assert all(not (tmp_path / k).exists() for k in deleted)
    assert all((tmp_path / (s + ".json")).exists() for s in stems[6:])
    assert binlog_retention(store, SITES, pitr_days=14, now=NOW) == []  # nothing more


def test_nothing_goes_without_a_dump_with_a_gtid_or_inside_the_window(tmp_path):
    store = LocalStore(tmp_path)
    for i in range(5):
        log(store, NOW - timedelta(days=30 - i), 10 * i, 10 * (i + 1))
    dump(store, "a", NOW - timedelta(days=40), None)
    assert binlog_retention(store, SITES, pitr_days=14, now=NOW) == []  # no site can use them: kept for now
    dump(store, "a", NOW - timedelta(days=1), 1000)  # its only GTID dump is recent: its oldest is the base
    assert len(binlog_retention(store, SITES, pitr_days=14, now=NOW, dry_run=True)) == 8  # never the newest log
    assert len(list(store.list("binlogs/"))) == 10  # dry run


def test_a_log_without_its_manifest_goes_once_a_day_old(tmp_path):
    store = LocalStore(tmp_path)
    kept = log(store, NOW - timedelta(hours=30), 0, 10)
    dead = binlog_stem(NOW - timedelta(hours=30), 1)  # a run killed between the log and its manifest
    young = binlog_stem(NOW - timedelta(hours=2), 0)  # maybe a run still going
    for stem in (dead, young):
        store.put_bytes(stem + BINLOG_SUFFIX, b"log")
    assert binlog_retention(store, SITES, pitr_days=14, now=NOW) == [dead + BINLOG_SUFFIX]
    assert sorted(o.key for o in store.list("binlogs/")) == sorted(
        [kept + ".json", kept + BINLOG_SUFFIX, young + BINLOG_SUFFIX])
