"""Dagster's SQLite and PostgreSQL storages, with their connections kept open; and pool slots
that a dead run can never hold for ever.

Dagster's SqliteEventLogStorage builds a new SQLAlchemy engine, connects and disposes of it for
every statement it runs: about four per event (the run's shard, then the cross-run index shard),
and each close of a WAL database checkpoints it. A batched run records two events per site and
asset (planned, materialized), so on a 2-core machine this alone cost ~11 ms an event, more than
backing up a small site. Here each shard keeps one engine with a small pool, for the few shards in
use (a long-lived web server would otherwise hold every run's file open). Same files, same schema,
same locking (Dagster's own lock around each connection): an instance can switch back and forth.
Each event also touches its run's .db file, which is what Dagster's watcher (the UI following a
run live) waits for.

PostgreSQL (dagster.production.yaml): Dagster's run and event log storages open a new connection,
a new server process, for every statement; PooledPostgresStorage keeps a few open instead (as
Dagster itself does inside its web server).

Pool slots (the `database` and `storage` pools): Dagster frees the slots of a run only when the run
itself gives them back, or in the daemon's run monitoring some time after the run is marked
finished. A run whose process was killed (SIGKILL, the OOM killer, a lost node) is never marked
finished, so its slot stayed claimed and every later backup waited for it, for ever. And Dagster
1.13's wait for a slot sleeps `min(0, ...)` seconds, that is never: it spun a whole core, and it
swallowed SIGTERM (Dagster captures interrupts and checks them only inside steps). Here:
- `fail_dead_runs` fails the runs that hold or wait for a slot and whose process is gone (the pid
  Dagster records in the run's start event, on this machine: a `wpfarm` command's run, tagged with
  its exact process identity, or any run of a local instance), and frees the slots of every
  finished run. The CLI calls it
  before each run; a waiting step calls it every DEAD_RUN_CHECK_SECONDS.
- a step waiting for a slot sleeps until its next claim check, and SIGTERM/SIGINT end the wait
  (the run fails as interrupted, its pending claim is withdrawn).
Both are patched into Dagster's classes when this module is imported, which every process that
uses the instance does (dagster.yaml names this module as its storage). Production also enables
Dagster's run monitoring (dagster.production.yaml) for runs in containers on other hosts.

dagster.yaml:
    storage:
      custom:
        module: wpfarm_assets.dagster_storage
        class: PooledSqliteStorage        # or PooledPostgresStorage, with the `postgres:` config
        config: {}                        # base_dir: default $DAGSTER_HOME, else ./.dagster (as `wpfarm`)
"""

import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterator

import sqlalchemy as db
from dagster import DagsterEventType, DagsterInstance, Field, StringSource, raise_execution_interrupts
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

OPEN_SHARDS = 8  # engines kept: the index shard and the runs being written or read right now


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, db.Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> db.Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=db.pool.QueuePool, pool_size=1, max_overflow=2,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            self._engines[shard] = engine
            while len(self._engines) > OPEN_SHARDS:
                self._engines.popitem(last=False)[1].dispose()
        self._engines.move_to_end(shard)
        return engine

    def store_event(self, event) -> None:
        super().store_event(event)
        # Who follows a run live (the web UI's run page) watches the shard's .db file for changes;
        # with WAL and connections kept open, a commit only writes the -wal file (Dagster's
        # closing connection used to checkpoint into the .db). Touch it, as a change notice.
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path_for_shard(event.run_id))

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        with self._db_lock:
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_all()  # the run shards' files are deleted: nothing may keep writing to them
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """DagsterSqliteStorage (same folders under base_dir) with PooledSqliteEventLogStorage."""

    def __init__(self, base_dir: str, inst_data=None):
        os.makedirs(base_dir, exist_ok=True)
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(os.path.join(base_dir, "history", ""))
        self._event_log_storage = PooledSqliteEventLogStorage(os.path.join(base_dir, "history", "runs", ""))
        self._schedule_storage = SqliteScheduleStorage.from_local(os.path.join(base_dir, "schedules"))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "PooledSqliteStorage":
        home = os.environ.get("DAGSTER_HOME") or os.path.join(os.getcwd(), ".dagster")
        return cls(config_value.get("base_dir") or home, inst_data)


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage whose run and event log storages keep one connection open each
    (more while threads need them at once: those close when returned)."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage):
            storage._engine.dispose()
            storage._engine = create_pg_engine(postgres_url, token_provider, isolation_level="AUTOCOMMIT",
                                               pool_size=1, max_overflow=15, pool_recycle=3600, pool_pre_ping=True)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "PooledPostgresStorage":
        return cls(pg_url_from_config(config_value), config_value.get("should_autocreate_tables", True),
                   inst_data, get_token_provider_from_config(config_value))


# Set by `wpfarm` on its runs: which process runs them, as host:boot_id:pid:start-ticks (exact,
# whatever the wall clock does; a reused pid has other start ticks).
PROCESS_TAG = "wpfarm/process"
DEAD_RUN_CHECK_SECONDS = 10.0  # how often a step waiting for a pool slot looks for dead holders


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def _start_ticks(pid: int) -> int | None:
    """Process `pid`'s start time in clock ticks since boot, or None if there is none (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def this_process() -> str:
    """The PROCESS_TAG value of the calling process."""
    return f"{socket.gethostname()}:{_boot_id()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def run_process_gone(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's process if it is known to be gone, else None: alive, or not judgeable
    (not started, on another machine, or a re-execution that copied another run's tags). Doubt
    always answers None: a live run must never be failed."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    starts = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    pid = starts[0].event_log_entry.dagster_event.pid if starts else None
    if pid is None:
        return None
    tagged = run.tags.get(PROCESS_TAG, "").split(":")
    if len(tagged) == 4:
        host, boot, tagged_pid, ticks = tagged
        if host != socket.gethostname() or tagged_pid != str(pid):
            return None
        return pid if boot != _boot_id() or str(_start_ticks(pid)) != ticks else None
    # Untagged (launched by the web UI or daemon): only on a local instance, by the pid alone.
    if isinstance(instance.run_storage, SqliteRunStorage) and _start_ticks(pid) is None:
        return pid
    return None


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Free the pool slots of finished runs, and fail (then free) the unfinished runs that hold or
    wait for a slot while their process is gone. Returns what it did, one line per run."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    done = []
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            pid = run_process_gone(instance, run_id)
            if pid is None:
                continue
            instance.report_run_failed(run, f"the process running this run (pid {pid}) is gone (killed?); "
                                            "its pool slots were freed")
            done.append(f"run {run_id}: its process (pid {pid}) is gone: marked failed, pool slots freed")
        else:
            done.append(f"run {run_id}: finished, pool slots freed")
        storage.free_concurrency_slots_for_run(run_id)
    return done


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    """Seconds until the earliest pending claim may be retried (Dagster's returns min(0, ...): never > 0)."""
    if not self._pending_claims:
        return 0.0
    return max(0.0, min(self._pending_timeouts.values(), default=0.0) - time.time())


def _sleep_til_ready(self: ActiveExecution) -> None:
    """Sleep until a step may run; interrupts end the wait; a waiting step looks for dead slot holders."""
    with raise_execution_interrupts():
        time.sleep(min(max(self.sleep_interval(), 0.05), DEAD_RUN_CHECK_SECONDS))
    context = self._instance_concurrency_context
    if context is not None and context.has_pending_claims():
        last = getattr(self, "_wpfarm_dead_run_check", 0.0)
        if time.monotonic() - last >= DEAD_RUN_CHECK_SECONDS:
            self._wpfarm_dead_run_check = time.monotonic()
            fail_dead_runs(context._instance)


InstanceConcurrencyContext.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check
ActiveExecution.sleep_til_ready = _sleep_til_ready
