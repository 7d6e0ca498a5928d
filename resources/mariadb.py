"""MariaDB through its own client tools (mariadb-dump, mariadb), run locally or on the database node.

Commands are argument lists. The password never appears on a command line or in the environment:
it is handed to the client as an option file read from a pipe (`--defaults-extra-file`).
Database and table names are validated identifiers before they reach SQL text.
"""

from __future__ import annotations

import dagster as dg

from resources.ssh import SECRET_FILE, Process, Runner, run
from wpfarm_assets.config import validate_identifier

DUMP_OPTIONS = [
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--skip-dump-date",
]
COMPLETION_MARKER = b"-- Dump completed"


def _quote(name: str) -> str:
    """An identifier for SQL text (table names come from the server and may hold odd characters)."""
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariaDB:
    def __init__(self, runner: Runner, host: str, port: int, user: str, password: str | None):
        self.runner = runner
        self._host, self._port, self._user = host, port, user
        self._secret = None
        self._version: str | None = None
        if password:
            escaped = password.replace("\\", "\\\\").replace('"', '\\"')
            self._secret = f'[client]\npassword="{escaped}"\n'.encode()

    def _argv(self, tool: str) -> list[str]:
        argv = [tool]
        if self._secret:  # must be the first option
            argv.append(f"--defaults-extra-file={SECRET_FILE}")
        return argv + ["--host", self._host, "--port", str(self._port), "--user", self._user]

    def dump_argv(self, database: str) -> list[str]:
        return self._argv("mariadb-dump") + DUMP_OPTIONS + ["--", validate_identifier(database)]

    def dump(self, database: str) -> Process:
        return self.runner.start(self.dump_argv(database), secret=self._secret)

    def load(self, database: str) -> Process:
        """A `mariadb` client reading SQL on stdin into `database`."""
        argv = self._argv("mariadb") + ["--binary-mode", "--database", validate_identifier(database)]
        return self.runner.start(argv, stdin=True, secret=self._secret)

    def query(self, sql: str) -> list[list[str]]:
        argv = self._argv("mariadb") + ["--batch", "--skip-column-names", "--raw", "--execute", sql]
        out = run(self.runner, argv, secret=self._secret)
        return [line.split("\t") for line in out.splitlines()]

    def version(self) -> str:
        if self._version is None:
            self._version = self.query("SELECT VERSION()")[0][0]
        return self._version

    def database_exists(self, database: str) -> bool:
        return self.tables(database) is not None

    def tables(self, database: str) -> list[str] | None:
        """The database's base tables, or None when there is no such database (one query)."""
        rows = self.query(
            "SELECT s.SCHEMA_NAME, IFNULL(t.TABLE_NAME, '') FROM information_schema.SCHEMATA s "
            "LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME AND t.TABLE_TYPE = 'BASE TABLE' "
            f"WHERE s.SCHEMA_NAME = {_literal(database)} ORDER BY t.TABLE_NAME"
        )
        if not rows:
            return None
        return [row[1] for row in rows if row[1]]  # an empty name: the database has no tables

    def row_counts(self, database: str) -> dict[str, int] | None:
        """Exact row count of every base table (two queries), or None when there is no such database."""
        tables = self.tables(database)
        if not tables:
            return tables
        sql = " UNION ALL ".join(
            f"SELECT {_literal(t)}, COUNT(*) FROM {_quote(database)}.{_quote(t)}" for t in tables
        )
        return {name: int(count) for name, count in self.query(sql)}

    def checksums(self, database: str) -> dict[str, str]:
        """CHECKSUM TABLE of every base table: equal data gives equal checksums."""
        tables = self.tables(database) or []
        if not tables:
            return {}
        rows = self.query("CHECKSUM TABLE " + ", ".join(f"{_quote(database)}.{_quote(t)}" for t in tables))
        return {name.split(".", 1)[1]: value for name, value in rows}

    def create_database(self, database: str) -> None:
        self.query(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")

    def drop_database(self, database: str) -> None:
        self.query(f"DROP DATABASE IF EXISTS {_quote(database)}")


class MariaDBResource(dg.ConfigurableResource):
    """Connection to the farm's MariaDB (through ProxySQL/Galera in production)."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str | None = None

    def client(self, runner: Runner) -> MariaDB:
        return MariaDB(runner, self.host, self.port, self.user, self.password)
