"""Restore drills: a site's newest backups restored and proven, and the time it took (the RTO).

A drill restores the site's newest database backup into a scratch database and its newest files
backup into a scratch folder, through the same functions as `wpfarm restore` (the RTO measured is
the one an operator will see), proves what came back against the manifests, and removes both,
always. It never touches the live database or files. Each drill leaves a record in the store
(`sites/<site>/drills/<stamp>.json`): status, alerts and the nightly sample read those.

Plain functions; the `restore_drill` asset, the drill schedule and `wpfarm drill` call them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import random
import re
import secrets
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from resources.mariadb import MariaDB
from resources.object_store import Store, StoreError
from resources.restic import Repository
from resources.ssh import Runner, run
from wpfarm_assets.backups.health import CRITICAL, NEW, OK, WARNING, Finding, sync_alerts
from wpfarm_assets.backups.identity import CORE_TABLES, table_prefix
from wpfarm_assets.backups.pitr import replay_to_end
from wpfarm_assets.backups.restore import list_backups, restore_database, restore_files
from wpfarm_assets.core.config import DRILL_DATABASE_PREFIX, FarmConfig, Site
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import DRILLS, drill_key, parse_drill_key, site_record_key, site_root, split_future
from wpfarm_assets.core.manifest import Manifest

DRILL_ALERT = "WpfarmRestoreDrill"
LEFTOVERS_AFTER = timedelta(hours=24)  # a scratch database or folder this old is a dead drill's
RECORDS_KEPT = 30  # drill records kept per site (older ones are deleted by the next drill)


class DrillError(WpfarmError):
    """A drill failed; the message names the site and every cause; `record` is the drill's record."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record


_SCRATCH = re.compile(r"^(?P<tag>[0-9a-f]{10})[-_](?P<epoch>\d{10})[-_][0-9a-f]{4}$")


def scratch_names(site: str, now: datetime) -> tuple[str, str]:
    """(scratch database, scratch folder name) of a drill of `site` started at `now`: the reserved
    prefix (refused as a site's database at config load), a tag of the site, the start time (by
    which a later drill knows a dead drill's leftovers) and a random part (two drills at once)."""
    tag, epoch, nonce = hashlib.sha256(site.encode()).hexdigest()[:10], int(now.timestamp()), secrets.token_hex(2)
    return f"{DRILL_DATABASE_PREFIX}{tag}_{epoch}_{nonce}", f"{tag}-{epoch}-{nonce}"


def _started(name: str) -> int | None:
    """The start time in a scratch name (without the database prefix), or None: not a drill's."""
    match = _SCRATCH.match(name)
    return int(match["epoch"]) if match else None


def remove_leftovers(db: MariaDB, runner: Runner, scratch_root: str, older_than: datetime) -> list[str]:
    """Drop the scratch databases and folders of drills started before `older_than` (a process that
    died mid-drill left them); nothing else (only names of the scratch shape). The names removed."""
    removed = []
    pattern = DRILL_DATABASE_PREFIX.replace("_", "\\_") + "%"
    for (name,) in db.query(f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{pattern}'"):
        started = _started(name[len(DRILL_DATABASE_PREFIX):])
        if started is not None and started < older_than.timestamp():
            db.drop_database(name)
            removed.append(name)
    listed = run(runner, ["find", scratch_root, "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-printf", "%f\\n"]
                 ) if runner.exists(scratch_root) else ""
    for name in listed.split():
        started = _started(name)
        if started is not None and started < older_than.timestamp():
            run(runner, ["rm", "-rf", "--", posixpath.join(scratch_root, name)])
            removed.append(name)
    return removed


def scratch_root_problem(path: str) -> str | None:
    """Why `path` may not hold drills' scratch folders (they receive a site's files and
    wp-config.php): it must be a real folder of this user that no one else can write to. None: fine.
    A missing one is created 0700."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        return f"drill.scratch_root {path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"drill.scratch_root {path} is not a folder (a link?)"
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return (f"drill.scratch_root {path} must be owned by this user and writable by no one else "
                f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})")
    return None


def prove_database(db: MariaDB, database: str, manifest: Manifest) -> tuple[list[str], dict]:
    """(problems, what was proven) of a dump restored into `database`: every table of the manifest
    there with its rows (a table that changed while the dump ran: between its counts before and
    after), no table the site did not have, and the WordPress core tables, `siteurl` set."""
    counts = db.row_counts(database) or {}
    expected = manifest.tables or {}
    changed = manifest.tables_after or {}  # created, dropped (-1) or changed while the dump ran
    problems = []
    if missing := sorted(set(expected) - set(counts) - set(changed)):
        problems.append(f"{len(missing)} table(s) missing: {', '.join(missing[:5])}")
    if extra := sorted(set(counts) - set(expected) - set(changed)):
        problems.append(f"{len(extra)} table(s) the site's backup did not have: {', '.join(extra[:5])}")
    for table in sorted(set(expected) & set(counts)):
        low, high = sorted((expected[table], changed.get(table, expected[table])))
        if not low <= counts[table] <= high:
            want = f"{low}" if low == high else f"{max(low, 0)}..{high} (it changed during the dump)"
            problems.append(f"table {table} has {counts[table]} rows, its manifest says {want}")
    prefix = table_prefix(counts)
    if prefix is None:
        problems.append("no table prefix has all the WordPress core tables (" + ", ".join(CORE_TABLES) + ")")
    else:
        options = "`" + database + "`.`" + (prefix + "options").replace("`", "``") + "`"
        siteurl = db.query(f"SELECT option_value FROM {options} WHERE option_name = 'siteurl'")
        if not siteurl or not siteurl[0][0].strip():
            problems.append(f"{prefix}options holds no siteurl")
    routines, problems_of_objects = prove_objects(db, database)
    return problems + problems_of_objects, {"tables": len(counts), "rows": sum(counts.values()), **routines}


def prove_objects(db: MariaDB, database: str) -> tuple[dict, list[str]]:
    """Every view of `database` answers a SELECT, and every function without parameters that says
    it writes nothing (NO SQL, READS SQL DATA) answers one: they work under this name and this
    server's accounts. Procedures are not called (a procedure may write anywhere): they are counted.
    Returns what was proven and the problems."""
    quoted = "`" + database.replace("`", "``") + "`"
    problems, proven = [], {"views": 0, "routines_called": 0, "procedures": 0}

    def answers(sql: str, counted: str, failure: str) -> None:
        try:
            db.query(sql)
            proven[counted] += 1
        except WpfarmError as exc:
            problems.append(f"{failure}: {str(exc).splitlines()[-1]}")

    for (view,) in db.query(f"SELECT HEX(TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = "
                            f"'{database}'"):
        name = bytes.fromhex(view).decode()
        answers(f"SELECT 1 FROM {quoted}.`{name.replace('`', '``')}` LIMIT 1", "views", f"view {name} cannot be selected")
    rows = db.query("SELECT HEX(r.ROUTINE_NAME), r.ROUTINE_TYPE, r.SQL_DATA_ACCESS FROM information_schema.ROUTINES r "
                    f"WHERE r.ROUTINE_SCHEMA = '{database}' AND NOT EXISTS (SELECT 1 FROM information_schema.PARAMETERS "
                    "p WHERE p.SPECIFIC_SCHEMA = r.ROUTINE_SCHEMA AND p.SPECIFIC_NAME = r.ROUTINE_NAME "
                    "AND p.ORDINAL_POSITION > 0)")
    for routine, kind, access in rows:
        if kind != "FUNCTION" or access not in ("NO SQL", "READS SQL DATA"):
            proven["procedures"] += kind == "PROCEDURE"
            continue
        name = bytes.fromhex(routine).decode()
        answers(f"SELECT {quoted}.`{name.replace('`', '``')}`()", "routines_called", f"function {name} fails")
    return proven, problems


def prove_files(runner: Runner, scratch: str, content: str, manifest: Manifest) -> tuple[list[str], dict]:
    """(problems, what was proven) of a files backup restored under `scratch`: as many regular files
    as the manifest says, of the total size it says (a snapshot records it), and wp-config.php
    when it was backed up."""
    tops = [posixpath.join(scratch, m) for m in (content, "wp-config.php") if runner.exists(posixpath.join(scratch, m))]
    sizes = [int(s) for s in run(runner, ["find", *tops, "-type", "f", "-printf", "%s\\n"]).split()] if tops else []
    problems = []
    # An older tar archive counted hard links once; they restore as files of their own.
    if manifest.files is not None and (len(sizes) != manifest.files if manifest.is_snapshot
                                       else len(sizes) < manifest.files):
        problems.append(f"{len(sizes)} files restored, the backup recorded {manifest.files}")
    if manifest.is_snapshot and sum(sizes) != manifest.plaintext_bytes:
        problems.append(f"{sum(sizes)} bytes of files restored, the backup recorded {manifest.plaintext_bytes}")
    if manifest.wp_config and not runner.exists(posixpath.join(scratch, "wp-config.php")):
        problems.append("wp-config.php was backed up but is not in the restore")
    return problems, {"files": len(sizes)}


def drill_site(site: Site, store: Store, db: MariaDB, runner: Runner, repository: Repository,
               gnupg_home: str | None, scratch_root: str, now: datetime | None = None,
               farm_databases: frozenset[str] = frozenset()) -> dict:
    """Drill one site (see the module) on this machine (`runner`: local); write and return its
    record. Raises DrillError naming every cause when anything could not be restored or proven; the
    scratch database and folder are gone either way, and so are other drills' older than
    LEFTOVERS_AFTER."""
    now = now or datetime.now(timezone.utc)
    database, folder = scratch_names(site.name, now)
    scratch = posixpath.join(scratch_root, folder)
    record: dict = {"site": site.name, "started_at": now.isoformat(), "scratch_database": database,
                    "scratch_folder": scratch, "backups": {}, "problems": []}
    problems: list[str] = record["problems"]
    prefix = f"site {site.name}: "
    try:
        if problem := scratch_root_problem(scratch_root):
            raise DrillError(problem)
        remove_leftovers(db, runner, scratch_root, now - LEFTOVERS_AFTER)
        for kind in ("db", "files"):
            started = time.monotonic()
            try:
                backups, _ = split_future(list_backups(store, site.name, kind, checkpoints=False), now)
                if not backups:
                    raise DrillError(f"no {kind} backup to drill")
                stamp = backups[-1].stamp  # the newest, as it is: a drill that fell back would hide it
                record["backups"][kind] = stamp
                if kind == "db":
                    restored = restore_database(site, store, db, gnupg_home, to_database=database, at=stamp)
                    found, proven = prove_database(db, database, restored["manifest"])
                    if not found:  # and the archived binary logs on top, to the archive's end (PITR RTO)
                        proven.update(replay_to_end(site, store, db, gnupg_home, restored["manifest"],
                                                    backups[-1].time, database, farm_databases))
                else:
                    restored = restore_files(site, store, runner, gnupg_home, to_path=scratch, at=stamp,
                                             repository=repository)
                    found, proven = prove_files(runner, scratch, posixpath.basename(site.content_path),
                                                restored["manifest"])
                record.update(proven)
                record[f"{kind}_bytes"] = restored["plaintext_bytes"]
                problems.extend(f"{kind} {stamp}: {p}" for p in found)
            except Exception as exc:  # noqa: BLE001 - every cause goes into the record and the error
                problems.append(f"{kind}: {str(exc).removeprefix(prefix)}")
            record[f"{kind}_seconds"] = round(time.monotonic() - started, 3)
    except WpfarmError as exc:  # the scratch space itself (the database server, the drill folder)
        problems.append(str(exc).removeprefix(prefix))
    finally:
        for cleanup in (lambda: db.drop_database(database), lambda: run(runner, ["rm", "-rf", "--", scratch])):
            try:
                cleanup()
            except WpfarmError as exc:
                problems.append(f"scratch not removed: {exc}")
    record.update(passed=not problems, finished_at=datetime.now(timezone.utc).isoformat(),
                  rto_seconds=round(record.get("db_seconds", 0) + record.get("files_seconds", 0), 3),
                  bytes_restored=record.get("db_bytes", 0) + record.get("files_bytes", 0))
    try:
        store.put_bytes(drill_key(site.name, now), json.dumps(record, indent=2, sort_keys=True).encode())
        old = sorted(o.key for o in store.list(f"{site_root(site.name)}{DRILLS}/") if parse_drill_key(o.key))
        if len(old) > RECORDS_KEPT:
            store.delete(old[:-RECORDS_KEPT])
    except StoreError as exc:  # the drill's own findings still reach the operator
        problems.append(f"its record was not written: {exc}")
    if problems:
        raise DrillError(f"{prefix}restore drill failed: " + "; ".join(problems), record)
    return record


def last_drills(store: Store, sites: list[str]) -> tuple[dict[str, dict], dict[str, datetime]]:
    """(each site's newest drill record, when each site joined): two small listings and a read per
    site, 8 sites at a time (a listing of the whole bucket would walk every restic pack)."""
    def one(site: str) -> tuple[str, dict | None, datetime | None]:
        records = [o.key for o in store.list(f"{site_root(site)}{DRILLS}/") if parse_drill_key(o.key)]
        joined = next((o.modified for o in store.list(site_record_key(site)) if o.key == site_record_key(site)), None)
        return site, json.loads(store.get_bytes(max(records))) if records else None, joined

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(one, sites))
    return ({site: record for site, record, _ in found if record is not None},
            {site: joined for site, _, joined in found if joined is not None})


def drill_findings(sites: list[str], last: dict[str, dict], added: dict[str, datetime | None], now: datetime,
                   every_days: int, rto_warning_minutes: float) -> list[Finding]:
    """A finding per site (kind `drill`): its last drill failed (critical); it is overdue (not
    drilled within twice `every_days`), or its RTO was over the warning (warning); else ok."""
    findings = []
    overdue = timedelta(days=2 * every_days)
    for site in sorted(sites):
        record = last.get(site)
        if record is None:
            since = added.get(site)
            if since is not None and now - since <= overdue:
                findings.append(Finding(site, "drill", NEW, f"not drilled yet (site added {_days(now - since)} ago)"))
            else:
                findings.append(Finding(site, "drill", WARNING, f"never drilled (due every {every_days} days)"))
            continue
        when = datetime.fromisoformat(record["started_at"])
        age = now - when
        hours = round(age.total_seconds() / 3600, 1)
        rto = record.get("rto_seconds", 0)
        if not record["passed"]:
            finding = (CRITICAL, f"restore drill {_days(age)} ago failed: " + "; ".join(record["problems"]))
        elif age > overdue:
            finding = (WARNING, f"overdue: last drill {_days(age)} ago (due every {every_days} days)")
        elif rto > rto_warning_minutes * 60:
            finding = (WARNING, f"RTO {rto:.0f} s, over {rto_warning_minutes:g} min (drill {_days(age)} ago)")
        else:
            finding = (OK, f"passed {_days(age)} ago, RTO {rto:.1f} s")
        findings.append(Finding(site, "drill", *finding, when, hours))
    return findings


def farm_drill_findings(store: Store, farm: FarmConfig, now: datetime | None = None) -> list[Finding]:
    """drill_findings for every configured site."""
    names = [s.name for s in farm.sites]
    last, added = last_drills(store, names)
    return drill_findings(names, last, added, now or datetime.now(timezone.utc), farm.drill.every_days,
                          farm.drill.rto_warning_minutes)


def sync_drill_alerts(store: Store, farm: FarmConfig, alertmanager, link: str) -> dict[str, int]:
    """Bring the WpfarmRestoreDrill alerts in line with every site's last drill."""
    return sync_alerts(alertmanager, DRILL_ALERT, farm_drill_findings(store, farm), link, {s.name for s in farm.sites})


def _days(delta: timedelta) -> str:
    hours = max(0.0, delta.total_seconds() / 3600)  # a site added a moment ago: 0.0 h, not -0.0 h
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def nightly_sample(sites: list[str], last: dict[str, datetime], every_days: int, extra: int, seed: str,
                   capacity: int | None = None) -> list[str]:
    """Tonight's sites: the ceil(N / every_days) drilled longest ago (never drilled first; at most
    `capacity`, what the drill window holds), then `extra` others at random (seeded by the night, so
    a retried tick picks the same). Oldest first, every site comes round within `every_days` nights."""
    share = math.ceil(len(sites) / every_days)
    if capacity is not None:
        share = min(share, capacity)
    never = datetime.min.replace(tzinfo=timezone.utc)
    order = sorted(sites, key=lambda s: (last.get(s, never), s))
    due, rest = order[:share], order[share:]
    room = extra if capacity is None else max(0, min(extra, capacity - len(due)))
    return sorted(due + random.Random(seed).sample(rest, min(room, len(rest))))
