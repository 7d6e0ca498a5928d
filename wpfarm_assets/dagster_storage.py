"""Dagster's SQLite and PostgreSQL storages, with their connections kept open.

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

dagster.yaml:
    storage:
      custom:
        module: wpfarm_assets.dagster_storage
        class: PooledSqliteStorage        # or PooledPostgresStorage, with the `postgres:` config
        config: {}                        # base_dir: default $DAGSTER_HOME, else ./.dagster (as `wpfarm`)
"""

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator

import sqlalchemy as db
from dagster import Field, StringSource
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
