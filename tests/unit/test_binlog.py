"""The binary-log reader, the replay filters and the replay plan, on hand-made binlog bytes and manifests
(the real cluster's logs are read in tests/integration/test_pitr_galera.py)."""

import struct
from datetime import datetime, timedelta, timezone

import pytest

from wpfarm_assets.backups.pitr import PitrError, parse_time, plan_replay
from wpfarm_assets.core.binlog import (
    FORMAT_DESCRIPTION_EVENT,
    GTID_EVENT,
    GTID_LIST_EVENT,
    LOST,
    MAGIC,
    QUERY_EVENT,
    ROTATE_EVENT,
    UNSAFE,
    XID_EVENT,
    BinlogError,
    BinlogReader,
    Gtid,
    OriginalGtidFilter,
    Statement,
    parse_position,
    statement_trap,
)
from wpfarm_assets.core.manifest import BinlogManifest

T0 = 1_796_000_000


def event(kind: int, body: bytes, ts: int = T0, server: int = 1) -> bytes:
    length = 19 + len(body) + 4  # with a CRC32 checksum
    return struct.pack("<IBIIIH", ts, kind, server, length, 0, 0) + body + b"\xde\xad\xbe\xef"


def binlog(transactions: list[tuple[int, int, str, str]], start: list[tuple[int, int, int]]) -> bytes:
    """A closed binlog: (domain, seq, db, query) transactions after the GTID list `start`."""
    fd = struct.pack("<H", 4) + b"10.11.19-MariaDB".ljust(50, b"\0") + struct.pack("<I", 0) + bytes([19]) + bytes(40) + b"\x01"
    data = MAGIC + event(FORMAT_DESCRIPTION_EVENT, fd, ts=0)  # stamped 0, as a log made by an SST is
    data += event(GTID_LIST_EVENT, struct.pack("<I", len(start)) + b"".join(struct.pack("<IIQ", *g) for g in start))
    for n, (domain, seq, db, query) in enumerate(transactions):
        data += event(GTID_EVENT, struct.pack("<QIB", seq, domain, 0) + bytes(6), ts=T0 + n)
        data += event(QUERY_EVENT, struct.pack("<IIBHH", 7, 0, len(db), 0, 0) + db.encode() + b"\0" + query.encode(),
                      ts=T0 + n)
        data += event(XID_EVENT, struct.pack("<Q", n), ts=T0 + n)
    return data + event(ROTATE_EVENT, struct.pack("<Q", 4) + b"binlog.000008", ts=T0 + len(transactions))


LOG = binlog([(100, 6, "wp_a", "CREATE TABLE t (i int)"), (12, 1, "", "CREATE TABLE wp_a.local (i int)"),
              (100, 7, "", "CREATE TABLE `wp_a`.t2 (i int)")], start=[(100, 2, 5), (100, 1, 4), (12, 2, 0)])


@pytest.mark.parametrize("chunk", [len(LOG), 1, 7, 64])
def test_the_reader_finds_gtids_offsets_times_and_the_start_state_in_any_chunking(chunk):
    statements = []
    reader = BinlogReader(keep_transactions=True, on_statement=statements.append)
    for i in range(0, len(LOG), chunk):
        reader.feed(LOG[i:i + chunk])
    assert reader.complete and reader.bytes == len(LOG)
    assert reader.start_state == {100: Gtid(100, 2, 5), 12: Gtid(12, 2, 0)}  # the furthest per domain
    assert [str(t.gtid) for t in reader.transactions] == ["100-1-6", "12-1-1", "100-1-7"]
    assert all(LOG[t.offset + 4] == GTID_EVENT for t in reader.transactions)  # offsets at GTID events
    assert (reader.first_time, reader.last_time) == (T0, T0 + 3)  # the FD event stamped 0 is not a time
    assert reader.end_state[100] == Gtid(100, 1, 7) and reader.gtid_count == 3
    assert reader.rotated_to == "binlog.000008"
    assert [(s.database, str(s.gtid)) for s in statements] == [("wp_a", "100-1-6"), ("", "12-1-1"), ("", "100-1-7")]
    assert statements[0].text == "CREATE TABLE t (i int)"


def test_a_copy_cut_inside_an_event_is_not_complete_and_garbage_is_refused():
    reader = BinlogReader()
    reader.feed(LOG[:-10])
    assert not reader.complete
    with pytest.raises(BinlogError, match="not a MariaDB binary log"):
        BinlogReader().feed(b"<html>not found</html>")


@pytest.mark.parametrize("database,text,others,trap", [
    ("", "CREATE TABLE wp_a.t (i int)", set(), LOST),  # --database=wp_a would drop it
    ("other", "ALTER TABLE `wp_a`.`wp_posts` ADD x int", set(), LOST),
    ("wp_a", "CREATE TABLE t (i int)", {"wp_b", "mysql"}, None),
    ("", "CREATE TABLE wp_ab.t (i int)", set(), None),  # another database whose name starts the same
    ("", "CREATE TABLE xwp_a.t (i int)", set(), None),
    ("", "BEGIN", set(), None),
    ("wp_a", "TRUNCATE TABLE wp_b.wp_options", {"wp_b"}, UNSAFE),  # kept, and it would empty another site's table
    ("wp_a", "DROP TABLE `wp_a`.`wp_links`", {"wp_a"}, UNSAFE),  # into another database: the rewrite misses it
    ("wp_a", "DROP TABLE `wp_a`.`wp_links`", set(), None),  # in place: it is the site's own
])
def test_statements_that_the_replay_would_drop_or_misapply_are_found(database, text, others, trap):
    found = statement_trap(Statement(Gtid(100, 1, 9), database, text), "wp_a", frozenset(others))
    assert (found and found[0]) == trap
    if trap:
        assert "100-1-9" in found[1]


def test_the_original_gtids_are_dropped_from_a_replay_across_chunk_boundaries():
    text = (b"# at 4\n/*M!100001 SET @@session.gtid_domain_id=100*//*!*/;\n/*M!100001 SET @@session.server_id=1*//*!*/;\n"
            b"/*M!100001 SET @@session.gtid_seq_no=67*//*!*/;\nSTART TRANSACTION\n/*!*/;\n"
            b"INSERT INTO t VALUES ('/*M!100001 SET @@session.gtid_seq_no=5*//*!*/;')\nCOMMIT/*!*/;\n"
            b"/*!100001 SET @@SESSION.SERVER_ID=@@GLOBAL.SERVER_ID */;\n"
            b"/*!100001 SET @@SESSION.GTID_DOMAIN_ID=@@GLOBAL.GTID_DOMAIN_ID */;\n")
    for size in (1, 5, 13, len(text)):
        f = OriginalGtidFilter()
        out = b"".join(f.feed(text[i:i + size]) for i in range(0, len(text), size)) + f.flush()
        assert b"@@session.gtid_seq_no=67" not in out and b"server_id=1" not in out and b"SERVER_ID" not in out
        assert b"START TRANSACTION\n/*!*/;\n" in out and b"VALUES ('/*M!100001 SET @@session.gtid_seq_no=5" in out
        assert f.removed == 5 and out.endswith(b"COMMIT/*!*/;\n")


def piece(start: int, end: int, first: int, last: int, n: int = 0) -> BinlogManifest:
    at = lambda s: datetime.fromtimestamp(T0 + s, timezone.utc).isoformat()  # noqa: E731
    return BinlogManifest(node="n:1", file=f"binlog.{n:06d}", domain=100, start_seq=start, end_seq=end,
                          transactions=end - start, first_event_at=at(first), last_event_at=at(last),
                          archived_at=at(last), object_key=f"k{n}", sha256="0" * 64, plaintext_bytes=1,
                          stored_bytes=1, key_fingerprint="F")


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, timezone.utc)


def test_a_replay_takes_the_logs_from_the_dump_to_t_across_a_node_switch():
    pieces = [piece(0, 10, 0, 100, 1), piece(10, 20, 100, 200, 2), piece(15, 30, 150, 300, 3),  # node switch overlap
              piece(30, 40, 300, 400, 4)]
    assert [p.file for p in plan_replay(pieces, 12, 100, at(250))] == ["binlog.000002", "binlog.000003"]
    assert [p.file for p in plan_replay(pieces, 5, 100, at(50))] == ["binlog.000001"]
    assert plan_replay(pieces, 40, 100, at(399)) == []  # nothing written since the dump, and the archive says so
    with pytest.raises(PitrError, match="does not cover"):  # the last log's last second may go on in the next one
        plan_replay(pieces, 40, 100, at(400))


def test_a_gap_or_an_archive_that_stops_short_is_refused_naming_it():
    pieces = [piece(0, 10, 0, 100, 1), piece(20, 30, 200, 300, 2)]  # GTIDs 11..20 lost
    with pytest.raises(PitrError, match=r"lies in a gap.*100-\*-11 to 100-\*-20"):
        plan_replay(pieces, 5, 100, at(150))
    with pytest.raises(PitrError, match="lies after a gap"):
        plan_replay(pieces, 5, 100, at(250))
    assert plan_replay(pieces, 25, 100, at(250)) == [pieces[1]]  # a dump after the gap is carried on
    with pytest.raises(PitrError, match="does not cover"):
        plan_replay(pieces, 25, 100, at(350))


def test_times_and_positions_parse_as_an_operator_types_them():
    assert parse_time("2026-12-07T14:32:05Z") == datetime(2026, 12, 7, 14, 32, 5, tzinfo=timezone.utc)
    assert parse_time("2026-12-07 15:32:05+01:00") == datetime(2026, 12, 7, 14, 32, 5, tzinfo=timezone.utc)
    assert parse_time("2026-12-07 14:32:05").utcoffset() == timedelta(0)  # no zone: UTC, as everywhere
    assert parse_time("2026-12-07T14:32:05.700Z").microsecond == 0  # a second: every write that began in it
    with pytest.raises(PitrError, match="ISO 8601"):
        parse_time("yesterday at five")
    assert parse_position("[100-2-5,100-1-9,12-2-1]") == {100: Gtid(100, 1, 9), 12: Gtid(12, 2, 1)}
    assert parse_position("") == {}


def test_the_chain_starts_at_the_oldest_log_or_where_the_newest_gap_resumes():
    from wpfarm_assets.backups.pitr import Archive, chain_start

    pieces = [piece(0, 10, 0, 100, 1), piece(20, 30, 200, 300, 2)]
    assert chain_start(Archive(pieces, [])) == 0
    gaps = [{"domain": 100, "after_seq": 10, "resumes_seq": 20}, {"domain": 7, "after_seq": 0, "resumes_seq": 99}]
    assert chain_start(Archive(pieces, gaps)) == 20  # a gap in another domain says nothing of this one
    assert chain_start(Archive([], gaps)) is None
    assert Archive(pieces, []).last_second == at(299)  # the reach's own second may go on in the next log
