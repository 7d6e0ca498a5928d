"""Point-in-time recovery: the farm's binary-log archive, and restoring a site to any second of it.

The recovery point of a database is the last archived binary-log event, not the last dump. Every
`database.binlog_every_minutes` the archive closes the current binary log on one node (FLUSH
BINARY LOGS) and stores every closed log that holds GTIDs not archived yet, compressed and
encrypted to the farm's key like a dump, each with a manifest written last (core/manifest.py,
BinlogManifest). The archive is continuous by GTID, not by file name: on Galera every node writes
the same GTID for the same write (wsrep_gtid_mode, one wsrep_gtid_domain_id), so when the node it
read from dies the next run carries on from another node at the next GTID. A GTID range that no
node still has is a gap: recorded, alerted on, and no restore crosses it.

A restore to T takes the newest verified dump started at or before T, verifies every archived log
it needs (sha256) before anything is written, loads the dump, then replays the site's transactions
after the dump's GTID up to T: `mariadb-binlog --start-position/--stop-position --database=DB`,
with byte offsets at transaction boundaries found by reading the logs (core/binlog.py). Events are
whole seconds; T includes every transaction that started in the second T.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from resources.gpg import decrypt_argv
from resources.mariadb import MariaDB, Node, NodeStatus
from resources.object_store import Store
from resources.restic import QUIET_COMMAND_FACTOR
from resources.ssh import CHUNK, LocalRunner, Watchdog, describe_failure, run
from wpfarm_assets.backups.backup import _tool_version
from wpfarm_assets.backups.health import CRITICAL, OK, WARNING, Finding
from wpfarm_assets.backups.pipeline import back_up_stream, restore_stream
from wpfarm_assets.backups.restore import RestoreError, choose_backup, list_backups, restore_database
from wpfarm_assets.backups.verify import read_manifest
from wpfarm_assets.core.binlog import (
    LOST,
    UNSAFE,
    BinlogReader,
    OriginalGtidFilter,
    event_time,
    parse_position,
    seq_in,
    statement_trap,
)
from wpfarm_assets.core.config import SYSTEM_DATABASES, FarmConfig, Site, validate_identifier
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import (
    BINLOG_GAPS,
    BINLOG_SUFFIX,
    BINLOGS,
    TIMESTAMP_FORMAT,
    BackupKey,
    binlog_gap_key,
    binlog_manifest_keys,
    binlog_stem,
)
from wpfarm_assets.core.manifest import BinlogManifest, Manifest, ManifestError

READ_BACK = timedelta(hours=1)  # logs archived this long before a dump started are read for its replay
SECOND = timedelta(seconds=1)  # binary-log events are stamped in whole seconds
FETCH_BATCH_BYTES = 1 << 30  # logs copied at once to the node's /tmp before they are stored (a first run may be big)


class PitrError(WpfarmError):
    """The binary-log archive cannot do what was asked; the message says what is missing."""


class DumpTooNew(PitrError):
    """The dump's snapshot holds a write made after T (its connection took a moment): an older one must do."""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _stamp(key: str) -> datetime:
    return datetime.strptime(posixpath.basename(key)[:16], TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------------- reading

@dataclass
class Archive:
    """What the store holds of the archive: manifests in archive order, and the recorded gaps."""

    pieces: list[BinlogManifest] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)

    @property
    def newest(self) -> BinlogManifest | None:
        """The last log archived (the pieces are in archive order)."""
        return self.pieces[-1] if self.pieces else None

    @property
    def reach(self) -> datetime | None:
        """The newest archived event's time (its log's rotate): the recovery point."""
        return max((_time(p.last_event_at) for p in self.pieces), default=None)

    @property
    def last_second(self) -> datetime | None:
        """The newest second whose every write is archived: the one before the reach (writes in the
        reach's own second after the rotate are in the next log)."""
        return None if self.reach is None else self.reach - SECOND


def read_archive(store: Store, since: datetime | None = None, ends_only: bool = False) -> Archive:
    """The archive's manifests (those archived from `since` on; with `ends_only` the oldest and the
    newest alone: enough for its reach and, with the gap records, where its chain starts) and its
    gap records."""
    keys = [o.key for o in store.list(BINLOGS)]
    manifests = binlog_manifest_keys(keys)
    if since is not None:
        manifests = [k for k in manifests if _stamp(k) >= since]
    if ends_only:
        manifests = sorted(set(manifests[:1] + manifests[-1:]))
    pieces = [BinlogManifest.from_bytes(store.get_bytes(k), k) for k in manifests]
    gaps = [_json(store.get_bytes(k), k) for k in sorted(keys) if k.startswith(BINLOG_GAPS) and k.endswith(".json")]
    return Archive(pieces, gaps)


def _json(data: bytes, key: str) -> dict:
    try:
        return json.loads(data)
    except ValueError:
        raise ManifestError(f"{key} cannot be read") from None


# -------------------------------------------------------------------------------------- archiving

@dataclass
class ArchiveRun:
    node: str
    archived: list[BinlogManifest]
    gap: dict | None
    end_seq: int  # the domain's sequence number the archive has reached
    reach: datetime | None
    passed_over: list[str]


def archive_binlogs(node: Node, status: NodeStatus, db: MariaDB, store: Store, encrypt_argv: list[str],
                    fingerprint: str, now: datetime | None = None, passed_over: list[str] | None = None) -> ArchiveRun:
    """Close the node's current binary log and archive every closed log with GTIDs the archive does
    not hold yet (or, on the first run, every closed log the node has). `db` is the node's client
    (its mariadb-binlog reads the logs over the replication protocol, where `db.runner` runs)."""
    if problem := status.pitr_problem:
        raise PitrError(f"point-in-time recovery is unavailable: {problem}")
    try:
        return _archive(node, status, db, store, encrypt_argv, fingerprint, now or datetime.now(timezone.utc),
                        passed_over or [])
    finally:
        node.close()


def _archive(node: Node, status: NodeStatus, db: MariaDB, store: Store, encrypt_argv: list[str], fingerprint: str,
             now: datetime, passed_over: list[str]) -> ArchiveRun:
    domain = status.gtid_domain
    archive = read_archive(store, ends_only=True)
    newest = archive.newest
    archived_seq = max([newest.end_seq if newest else -1] + [g["resumes_seq"] for g in archive.gaps
                                                             if g["domain"] == domain])
    listed = node.flush_binary_logs()
    logs, sizes = [name for name, _ in listed], dict(listed)
    closed = logs[:-1]  # every log but the one the flush just opened
    gap = None
    if newest is None:
        todo = closed  # the first run: every closed log the node has
    elif newest.node == node.address and newest.file in closed:
        todo = closed[closed.index(newest.file) + 1:]  # the same node: the logs after the last archived one
    else:  # another node (or the log is gone): from its newest log that starts at or before the archive's end
        begin = next((i for i in range(len(closed) - 1, -1, -1)
                      if (start := _file_start(node, closed[i], domain)) is not None and start <= archived_seq), 0)
        todo = closed[begin:]
    first = _file_start(node, todo[0], domain) if newest is not None and todo else None
    if first is not None and first > archived_seq:
        gap = _record_gap(store, node, domain, archived_seq, first, newest, now)
    archived = []
    for batch in _batches(todo, sizes):  # a remote read of up to FETCH_BATCH_BYTES of logs at a time
        folder = run(db.runner, ["mktemp", "-d", "/tmp/wpfarm-binlog.XXXXXXXX"]).strip()
        try:
            run(db.runner, db.binlog_fetch_argv([_log_name(name) for name in batch], folder), secret=db.secret,
                timeout=db.stall_timeout * QUIET_COMMAND_FACTOR)  # it writes files, nothing on its output
            for name in batch:
                archived.append(_archive_one(node, db, store, posixpath.join(folder, name), domain, encrypt_argv,
                                             fingerprint, binlog_stem(now, len(archived)), now))
        finally:
            try:
                run(db.runner, ["rm", "-rf", "--", folder])
            except WpfarmError:
                pass  # where the copy runs is unreachable now: its error is the one to report; /tmp is cleaned there
    end_seq = max([archived_seq, *(m.end_seq for m in archived)])
    reach = max([_time(m.last_event_at) for m in archived] + ([_time(newest.last_event_at)] if newest else []),
                default=None)
    return ArchiveRun(node.address, archived, gap, end_seq, reach, passed_over)


def _batches(names: list[str], sizes: dict[str, int]) -> Iterator[list[str]]:
    batch, total = [], 0
    for name in names:
        if batch and total + sizes.get(name, 0) > FETCH_BATCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(name)
        total += sizes.get(name, 0)
    if batch:
        yield batch


def _file_start(node: Node, name: str, domain: int) -> int | None:
    """The domain's sequence number a binary log starts after: its GTID list event's, or (a list
    without the domain, as after RESET MASTER) the one before its first GTID in the domain among
    its first events; None: not known (no GTID of the domain there)."""
    rows = node.rows(f"SHOW BINLOG EVENTS IN '{_log_name(name)}' LIMIT 4")
    if not any(row[2] == "Gtid_list" and f"{domain}-" in row[5] for row in rows):
        rows = node.rows(f"SHOW BINLOG EVENTS IN '{_log_name(name)}' LIMIT 2000")
    for row in rows:
        if row[2] == "Gtid_list":
            position = parse_position(row[5])
            if domain in position:
                return position[domain].seq
        elif row[2] == "Gtid" and (found := re.search(rf"\b{domain}-\d+-(\d+)", row[5])):
            return int(found[1]) - 1
    return None


def _log_name(name: str) -> str:
    if not name or any(not (c.isalnum() or c in "._-") for c in name):
        raise PitrError(f"the server named a binary log {name!r}")
    return name


def _record_gap(store: Store, node: Node, domain: int, archived_seq: int, resumes_seq: int,
                newest: BinlogManifest | None, now: datetime) -> dict:
    gap = {"domain": domain, "after_seq": archived_seq, "resumes_seq": resumes_seq, "found_at": now.isoformat(),
           "node": node.address, "archived_until": newest.last_event_at if newest else None,
           "lost": f"GTIDs {domain}-*-{archived_seq + 1} to {domain}-*-{resumes_seq}"}
    store.put_bytes(binlog_gap_key(now), json.dumps(gap, indent=2).encode())
    return gap


def _archive_one(node: Node, db: MariaDB, store: Store, path: str, domain: int, encrypt_argv: list[str],
                 fingerprint: str, stem: str, now: datetime) -> BinlogManifest:
    """One copied log → zstd → gpg → store, read on the way (BinlogReader); then its manifest."""
    name = posixpath.basename(path)
    reader = BinlogReader()

    def complete() -> None:
        # Not "ends with a rotate event": a log an SST rotated has one stamped 0, which
        # mariadb-binlog leaves out of its copy.
        if not reader.complete:
            raise PitrError(f"the copy of binary log {name} from {node.address} ends inside an event (truncated)")

    key = stem + BINLOG_SUFFIX
    stats = back_up_stream(db.runner.start(["cat", "--", path]), encrypt_argv, store, key, reader.feed, complete,
                           stall_timeout=db.stall_timeout)
    ours = [g for g in (reader.first_gtid, reader.last_gtid) if g is not None and g.domain == domain]
    manifest = BinlogManifest(
        node=node.address, file=name, domain=domain,
        start_seq=start if (start := reader.start_seq(domain)) is not None else seq_in(reader.end_state, domain),
        end_seq=seq_in(reader.end_state, domain),
        first_gtid=str(ours[0]) if ours else None, last_gtid=str(ours[-1]) if ours else None,
        transactions=reader.gtid_count, first_event_at=event_time(reader.first_time) or now.isoformat(),
        last_event_at=event_time(reader.last_time) or now.isoformat(), archived_at=now.isoformat(),
        object_key=key, sha256=stats.sha256, plaintext_bytes=stats.plaintext_bytes, stored_bytes=stats.stored_bytes,
        key_fingerprint=fingerprint, tools={"mariadb-binlog": _tool_version(db.runner, "mariadb-binlog")},
    )
    store.put_bytes(stem + ".json", manifest.to_bytes())
    return manifest


# -------------------------------------------------------------------------------------- retention

def binlog_retention(store: Store, sites: list[Site], pitr_days: int, now: datetime | None = None,
                     dry_run: bool = False) -> list[str]:
    """Delete the archived logs no kept recovery window needs: archived more than `pitr_days` ago,
    and ending at or before the GTID of the dump each site would restore `pitr_days` ago from (its
    newest dump at or before then, else its oldest). Never the newest log. Sites without a dump with
    a GTID (no point-in-time recovery yet) do not hold logs back. Manifests first, then the logs;
    and logs without a manifest (a run killed between the two) a day old."""
    now = now or datetime.now(timezone.utc)
    horizon = now - timedelta(days=pitr_days)
    listed = [o.key for o in store.list(BINLOGS)]
    keys = binlog_manifest_keys(listed)
    # A log stored by a run that died before its manifest: not a backup, removed once a day old.
    manifested = {k[:-len(".json")] for k in keys}
    orphans = [k for k in listed if k.endswith(BINLOG_SUFFIX) and k[:-len(BINLOG_SUFFIX)] not in manifested
               and _stamp(k) < now - timedelta(days=1)]
    if orphans and not dry_run:
        store.delete(orphans)
    if len(keys) < 2 or _stamp(keys[0]) >= horizon:  # nothing old enough: nothing read
        return orphans
    needed = []
    for site in sites:
        dumps = [(k, m) for k in list_backups(store, site.name, "db")
                 if (m := _readable(store, k)) is not None and m.gtid is not None and m.gtid_domain is not None]
        base = [d for d in dumps if d[0].time <= horizon][-1:] or dumps[:1]
        needed += [seq_in(parse_position(m.gtid), m.gtid_domain) for _, m in base]
    if not needed:
        return orphans
    keep_from = min(needed)
    manifests, logs = [], []
    for key in keys[:-1]:
        if _stamp(key) >= horizon:
            break
        manifest = BinlogManifest.from_bytes(store.get_bytes(key), key)
        if manifest.end_seq <= keep_from:
            manifests.append(key)
            logs.append(manifest.object_key)
    if manifests and not dry_run:
        store.delete(manifests)
        store.delete(logs)
    return orphans + manifests + logs


def _readable(store: Store, key: BackupKey) -> Manifest | None:
    try:
        return read_manifest(store, key)
    except ManifestError:
        return None  # an unreadable dump holds nothing back; the integrity check reports it


# -------------------------------------------------------------------------------------- restoring

def parse_time(text: str, what: str = "--time") -> datetime:
    """--time (or --as-of) as an operator types it: ISO 8601, UTC unless it says otherwise (2026-12-07T14:32:05Z)."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PitrError(f"{what} {text!r} is not a time: use ISO 8601, e.g. 2026-12-07T14:32:05Z (UTC)") from None
    # Events are stamped in whole seconds: T is a second, and includes every write that began in it.
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)


def _fmt(t: datetime | str | None) -> str:
    if t is None:
        return "-"
    t = _time(t) if isinstance(t, str) else t
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def plan_replay(pieces: list[BinlogManifest], dump_seq: int, domain: int, t: datetime) -> list[BinlogManifest]:
    """The archived logs a restore to `t` replays after a dump at `dump_seq`, in GTID order. A GTID
    range missing between them (a gap), or nothing archived up to `t`, is a PitrError saying so."""
    chosen, reached, covered = [], dump_seq, None
    for piece in sorted((p for p in pieces if p.domain == domain), key=lambda p: (p.end_seq, p.last_event_at)):
        if piece.end_seq < reached:
            continue  # all before the point the chain has reached: says nothing of the time after it
        if piece.start_seq > reached:
            where = "in" if _time(piece.first_event_at) > t else "after"
            raise PitrError(
                f"{_fmt(t)} lies {where} a gap of the binary-log archive: GTIDs {domain}-*-{reached + 1} to "
                f"{domain}-*-{piece.start_seq} were never archived (no node still had them), written between "
                f"{_fmt(covered)} and {_fmt(piece.first_event_at)}; restore to a time before the gap, or after the "
                "first dump taken after it")
        covered = max(covered or _time(piece.last_event_at), _time(piece.last_event_at))
        if piece.end_seq > reached:
            chosen.append(piece)
            reached = piece.end_seq
        if covered >= t + SECOND:  # a log's last second may go on in the next log (its rotate came mid-second)
            return chosen
    raise PitrError(f"the binary-log archive does not cover {_fmt(t)} after this dump: it reaches {_fmt(covered)}"
                    + ("" if covered else " (no archived log continues from the dump's GTID)"))


def newest_before(store: Store, site: str, kind: str, t: datetime) -> BackupKey:
    """The site's newest backup of `kind` taken at or before `t` (files restored with --time)."""
    keys = [k for k in list_backups(store, site, kind) if k.time <= t]
    if not keys:
        raise PitrError(f"site {site}: no {kind} backup at or before {_fmt(t)}")
    return keys[-1]


@dataclass
class _Fetched:
    manifest: BinlogManifest
    path: str  # decrypted binary log
    start: int | None = None  # byte offsets to replay: from the first transaction after the dump
    stop: int | None = None  # to the first transaction after T (None: to the end)
    transactions: int = 0


def restore_to_time(site: Site, store: Store, db: MariaDB, gnupg_home: str | None, t: datetime,
                    to_database: str | None = None, force: bool = False, now: datetime | None = None,
                    farm_databases: frozenset[str] = frozenset(), touching: Callable[[], None] | None = None) -> dict:
    """The site's database as it was at `t` (to the second), in place or in `to_database`.
    `farm_databases`: every site's database (a replay must not touch the others)."""
    now = now or datetime.now(timezone.utc)
    t = t.replace(microsecond=0)  # a second: every write that began in it
    target = validate_identifier(to_database or site.database)
    if t > now:
        raise PitrError(f"--time {_fmt(t)} is in the future (it is {_fmt(now)})")
    archive = read_archive(store, ends_only=True)
    if archive.reach is None:
        raise PitrError("no binary logs are archived: point-in-time recovery needs the binary-log archive "
                        "(database.binlog_every_minutes; `wpfarm binlogs`)")
    if t > archive.last_second:
        raise PitrError(f"the binary-log archive reaches {_fmt(archive.last_second)}, every write up to that second "
                        f"(its newest log closed at {_fmt(archive.reach)}, "
                        f"{(now - archive.reach).total_seconds() / 60:.0f} min ago, and writes later in that second "
                        f"are in the next log); {_fmt(t)} is after it: run `wpfarm binlogs` and try again")
    dumps = [k for k in list_backups(store, site.name, "db") if k.time <= t]
    if not dumps:
        oldest = list_backups(store, site.name, "db")[:1]
        raise PitrError(f"site {site.name}: {_fmt(t)} is before its oldest database backup"
                        + (f" ({_fmt(oldest[0].time)})" if oldest else " (it has none)"))
    refused, without_gtid = [], 0
    for key in reversed(dumps):
        try:
            manifest = read_manifest(store, key)
        except ManifestError as exc:
            refused.append(str(exc))
            continue
        if manifest.gtid is None or manifest.gtid_domain is None:
            without_gtid += 1
            continue
        if _time(manifest.snapshot_at or manifest.started_at).replace(microsecond=0) > t:  # its snapshot came after T
            continue
        dump_seq = seq_in(parse_position(manifest.gtid), manifest.gtid_domain)
        pieces = read_archive(store, since=key.time - READ_BACK).pieces
        plan = plan_replay(pieces, dump_seq, manifest.gtid_domain, t)  # a gap: no older dump crosses it either
        try:
            key, manifest, refused_now = choose_backup(store, site.name, "db", gnupg_home, at=key.stamp)
        except RestoreError as exc:
            refused.append(str(exc))
            continue
        try:
            with fetched_logs(store, plan, dump_seq, manifest.gtid_domain, t, gnupg_home, site.database,
                              others_of(site, target, farm_databases), db.stall_timeout) as (fetched, traps):
                if problem := replay_problem(traps, site, force):
                    raise PitrError(problem)
                restored = restore_database(site, store, db, gnupg_home, target, at=key.stamp, force=force,
                                            touching=touching)
                replayed = sum(_replay(f, site.database, target, db) for f in fetched)
        except DumpTooNew as exc:  # found before anything was written
            refused.append(f"{key.stamp}: {exc}")
            continue
        return {**restored, "database": target, "time": t, "dump": key.data_key, "dump_gtid": manifest.gtid,
                "binlogs": [f.manifest.object_key for f in fetched], "transactions_replayed": replayed,
                "binlog_bytes": sum(f.manifest.plaintext_bytes for f in fetched),
                "skipped_statements": [text for _, text in traps],
                "refused": refused + refused_now + restored["refused"]}
    if without_gtid and not refused:
        raise PitrError(f"site {site.name}: no database backup before {_fmt(t)} records a GTID position "
                        "(binary logging was off when they were taken)")
    raise PitrError(f"site {site.name}: no database backup before {_fmt(t)} can be carried to it: "
                    + ("; ".join(refused) or "each one's snapshot came after it"))


@contextlib.contextmanager
def fetched_logs(store: Store, plan: list[BinlogManifest], dump_seq: int, domain: int, t: datetime,
                 gnupg_home: str | None, database: str, others: frozenset[str], stall_timeout: float
                 ) -> Iterator[tuple[list[_Fetched], list[tuple[str, str]]]]:
    """The plan's logs in a scratch folder, each verified and decrypted, with the byte ranges to
    replay found, and the statements the replay would drop or misapply; the folder goes after."""
    with tempfile.TemporaryDirectory(prefix="wpfarm-pitr-") as folder:
        fetched = _fetch_verified(store, plan, folder, gnupg_home, stall_timeout)
        yield fetched, _locate(fetched, dump_seq, domain, t, database, others)


def replay_problem(traps: list[tuple[str, str]], site: Site, force: bool) -> str | None:
    """Why the replay must not go ahead: any statement it would misapply (never), or one it would
    leave out (unless `force`)."""
    unsafe = [text for kind, text in traps if kind == UNSAFE]
    lost = [text for kind, text in traps if kind == LOST]
    if unsafe:
        return (f"site {site.name}: {len(unsafe)} statement(s) in the logs would change another database if "
                "replayed: " + "; ".join(unsafe[:3]) + "; nothing restored (restore to a time before them, "
                "or from a dump taken after them)")
    if lost and not force:
        return (f"site {site.name}: {len(lost)} statement(s) in the logs would be left out: " + "; ".join(lost[:3])
                + "; nothing restored (add --force to replay without them)")
    return None


def others_of(site: Site, target: str, farm_databases: frozenset[str]) -> frozenset[str]:
    """The databases a replay of `site` must not touch: the farm's other sites', the server's own,
    and the site's own when the replay goes into another database."""
    return frozenset(farm_databases - {site.database}) | SYSTEM_DATABASES | (
        {site.database} if target != site.database else frozenset())


def replay_to_end(site: Site, store: Store, db: MariaDB, gnupg_home: str | None, dump: Manifest, dumped: datetime,
                  target: str, farm_databases: frozenset[str] = frozenset()) -> dict:
    """What a restore drill adds once the dump is in `target`: the site's archived logs from the
    dump to the archive's end, replayed into it; the time it took per MB of log (the PITR RTO).
    Nothing ({}) when the dump has no GTID or nothing is archived after it."""
    archive = read_archive(store, ends_only=True)
    reach = archive.last_second
    if dump.gtid is None or dump.gtid_domain is None or reach is None or reach <= dumped:
        return {}
    dump_seq = seq_in(parse_position(dump.gtid), dump.gtid_domain)
    if archive.newest.end_seq <= dump_seq:  # nothing archived after the dump yet
        return {}
    started = time.monotonic()
    plan = plan_replay(read_archive(store, since=dumped - READ_BACK).pieces, dump_seq, dump.gtid_domain, reach)
    with fetched_logs(store, plan, dump_seq, dump.gtid_domain, reach, gnupg_home, site.database,
                      others_of(site, target, farm_databases), db.stall_timeout) as (fetched, traps):
        if problem := replay_problem(traps, site, force=True):  # what a replay would misapply; left-out DDL is counted
            raise PitrError(f"binary logs not replayed: {problem}")
        replayed = sum(_replay(f, site.database, target, db) for f in fetched)
    seconds = time.monotonic() - started
    size = sum(f.manifest.plaintext_bytes for f in fetched)
    return {"pitr_seconds": round(seconds, 3), "pitr_binlog_bytes": size, "pitr_transactions": replayed,
            "pitr_seconds_per_mb": round(seconds / max(size / 1e6, 1e-6), 3), "pitr_reach": reach.isoformat(),
            "pitr_statements_left_out": len(traps)}


def _fetch_verified(store: Store, plan: list[BinlogManifest], folder: str, gnupg_home: str | None,
                    stall_timeout: float) -> list[_Fetched]:
    """Every log of the plan, decrypted into `folder` by the restore stream (gpg -d, zstd -d, its
    stall deadline), which checks the object against its manifest's sha256: all of them before
    anything is applied."""
    fetched = []
    for n, piece in enumerate(plan):
        path = os.path.join(folder, f"{n:05d}.binlog")
        try:
            restore_stream(store, piece.object_key, piece.sha256, decrypt_argv(gnupg_home),
                           LocalRunner().start(["dd", f"of={path}", "bs=1M", "status=none"], stdin=True),
                           stall_timeout=stall_timeout)
        except WpfarmError as exc:
            raise PitrError(f"archived binary log {piece.object_key}: {exc}; nothing restored") from None
        fetched.append(_Fetched(piece, path))
    return fetched


def _locate(fetched: list[_Fetched], dump_seq: int, domain: int, t: datetime, database: str,
            others: frozenset[str]) -> list[tuple[str, str]]:
    """Find in each log the byte range to replay: from the first transaction of the domain after
    what was replayed before it, to the first transaction that began after the second `t`. Returns
    the statements of that range that the replay would drop or misapply (statement_trap)."""
    reached, traps, limit = dump_seq, [], t.timestamp() + 1
    for f in fetched:
        statements = []
        reader = BinlogReader(keep_transactions=True, on_statement=statements.append)
        with open(f.path, "rb") as inp:
            while chunk := inp.read(CHUNK):
                reader.feed(chunk)
        if late_in_dump := [x for x in reader.transactions if x.gtid.domain == domain and x.gtid.seq <= dump_seq
                            and x.time >= limit]:
            raise DumpTooNew(f"the dump holds GTID {late_in_dump[-1].gtid}, written after {_fmt(t)}: its snapshot "
                             "came after T")
        after = [x for x in reader.transactions if x.gtid.domain == domain and x.gtid.seq > reached]
        f.start = after[0].offset if after else None
        late = [x for x in reader.transactions if x.time >= limit]
        f.stop = late[0].offset if late else None
        replay = [x for x in after if f.stop is None or x.offset < f.stop]
        f.transactions = len(replay)
        if replay:
            reached = replay[-1].gtid.seq
        chosen = {x.gtid for x in replay}
        traps += [trap for s in statements if s.gtid in chosen and (trap := statement_trap(s, database, others))]
    return traps


def _replay(f: _Fetched, database: str, target: str, db: MariaDB) -> int:
    """mariadb-binlog (here, on the decrypted log) | mariadb (where the database is), without the
    transactions' original GTIDs (OriginalGtidFilter): the server gives them new ones."""
    if f.start is None or (f.stop is not None and f.stop <= f.start):
        return 0
    argv = ["mariadb-binlog", f"--start-position={f.start}", *([f"--stop-position={f.stop}"] if f.stop else []),
            f"--database={database}", *([f"--rewrite-db={database}->{target}"] if target != database else []),
            "--", f.path]
    source = LocalRunner().start(argv)
    sink = db.load(target)
    original = OriginalGtidFilter()
    with Watchdog(db.stall_timeout, lambda: (source.kill(), sink.kill()), "the binary-log replay") as watchdog:
        try:
            while chunk := source.read(CHUNK):
                watchdog.progress()
                sink.write(original.feed(chunk))
            sink.write(original.flush())
        except (BrokenPipeError, OSError):
            source.kill()
        finally:
            sink.close_stdin()
        problems = [describe_failure(p, status) for p in (source, sink) if (status := p.wait()) != 0]
    if watchdog.stalled:
        problems.insert(0, watchdog.stalled)
    if problems:
        raise RestoreError(f"replaying {f.manifest.object_key} into {target} failed: " + "; ".join(problems)
                           + " (the database holds the dump and part of the logs: restore again)")
    return f.transactions


# ------------------------------------------------------------------------------------ the windows

def recovery_window(store: Store, site: str, archive: Archive) -> tuple[datetime, datetime] | None:
    """The oldest and newest second the site can be restored to: from its oldest dump (with a GTID)
    that the archive continues from without a gap, to the archive's reach. None: no such dump."""
    if archive.reach is None:
        return None
    start = chain_start(archive)
    for key in list_backups(store, site, "db"):
        manifest = _readable(store, key)
        if manifest is not None and manifest.gtid is not None and start is not None and \
                seq_in(parse_position(manifest.gtid), manifest.gtid_domain) >= start:
            return _time(manifest.snapshot_at or manifest.started_at).replace(microsecond=0), archive.last_second
    return None


def chain_start(archive: Archive) -> int | None:
    """The sequence number from which the archive runs without a gap to its newest log: its oldest
    log's start, or where the newest recorded gap resumes (every discontinuity is recorded as one)."""
    if not archive.pieces:
        return None
    oldest = min(archive.pieces, key=lambda p: (p.end_seq, p.last_event_at))
    return max([oldest.start_seq] + [g["resumes_seq"] for g in archive.gaps if g["domain"] == oldest.domain])


def archive_age(archive: Archive, now: datetime | None = None) -> float | None:
    """Seconds since the last archived event (None: nothing archived): the RPO right now."""
    now = now or datetime.now(timezone.utc)
    return None if archive.reach is None else max(0.0, (now - archive.reach).total_seconds())



def binlog_findings(archive: Archive, farm: FarmConfig, now: datetime) -> list[Finding]:
    """The archive's age against its thresholds (warning after 15 min or three missed runs,
    critical after 60 or twelve), and every gap recorded within database.pitr_days (critical)."""
    age = archive_age(archive, now)
    every = farm.database.binlog_every_minutes
    warning, critical = max(15, 3 * every) * 60, max(60, 12 * every) * 60
    if age is None:
        findings = [Finding("farm", "binlog", CRITICAL, "nothing archived yet: no point-in-time recovery")]
    else:
        severity = CRITICAL if age > critical else WARNING if age > warning else OK
        findings = [Finding("farm", "binlog", severity, f"archived until {_fmt(archive.reach)}, {age / 60:.1f} min "
                            f"ago (the RPO now; warning after {warning // 60} min, critical after {critical // 60})",
                            archive.reach, round(age / 3600, 3))]
    horizon = now - timedelta(days=farm.database.pitr_days)
    for gap in archive.gaps:
        if _time(gap["found_at"]) >= horizon:
            findings.append(Finding("farm", "binlog-gap", CRITICAL,
                                    f"{gap['lost']} were never archived (no node still had them; found "
                                    f"{_fmt(gap['found_at'])}, archived until {_fmt(gap.get('archived_until'))}): "
                                    "no site can be restored to a time in the gap, nor carried across it"))
    return findings


def pitr_findings(store: Store, sites: list[str], archive: Archive, now: datetime) -> list[Finding]:
    """Per site, its recovery window (`archive` read whole): any second from its oldest dump that the
    archive continues from, to the archive's reach; a site with no such dump is a warning."""
    findings = []
    for site in sites:
        window = recovery_window(store, site, archive)
        if window is None:
            findings.append(Finding(site, "pitr", WARNING, "no dump with a GTID position that the binary-log archive "
                                    "continues from: point-in-time recovery from the next dump on"))
        else:
            findings.append(Finding(site, "pitr", OK, f"any second from {_fmt(window[0])} to {_fmt(window[1])}",
                                    window[1], round((now - window[1]).total_seconds() / 3600, 3)))
    return findings


def pitr_on(farm: FarmConfig, store: Store) -> bool:
    """Whether the farm has point-in-time recovery: Galera nodes configured, or logs archived."""
    return bool(farm.database.galera_nodes) or any(True for _ in store.list(BINLOGS))
