"""MariaDB through its own client tools (mariadb-dump, mariadb), run locally or on the database node.

Commands are argument lists. The password never appears on a command line or in the environment:
it is handed to the client as an option file read from a pipe (`--defaults-extra-file`).
Database and table names are validated identifiers before they reach SQL text.
"""

from __future__ import annotations

import dagster as dg

from resources.ssh import SECRET_FILE, Process, Runner, run
from wpfarm_assets.core.config import validate_identifier

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
    """`stall_timeout`: seconds a query or dump may send nothing before it is killed (a hung server)."""

    def __init__(self, runner: Runner, host: str, port: int, user: str, password: str | None,
                 stall_timeout: float = 300):
        self.runner = runner
        self.host, self.port, self.user = host, port, user
        self.stall_timeout = stall_timeout
        self._secret = None
        self._version: str | None = None
        if password:
            escaped = password.replace("\\", "\\\\").replace('"', '\\"')
            self._secret = f'[client]\npassword="{escaped}"\n'.encode()

    def _argv(self, tool: str) -> list[str]:
        argv = [tool]
        if self._secret:  # must be the first option
            argv.append(f"--defaults-extra-file={SECRET_FILE}")
        argv += ["--host", self.host, "--port", str(self.port), "--user", self.user]
        if tool == "mariadb":  # mariadb-dump has no such option; the stream's stall deadline covers it
            argv.append(f"--connect-timeout={max(1, min(60, int(self.stall_timeout)))}")
        return argv

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
        out = run(self.runner, argv, secret=self._secret, timeout=self.stall_timeout)
        return [line.split("\t") for line in out.splitlines()]

    def version(self) -> str:
        if self._version is None:
            self._version = self.query("SELECT VERSION()")[0][0]
        return self._version

    def database_exists(self, database: str) -> bool:
        rows = self.query(f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {_literal(database)}")
        return rows[0][0] != "0"

    def tables(self, database: str) -> list[str]:
        """The database's base tables. (Filtering TABLES on TABLE_SCHEMA alone lets the server read
        just that database's metadata; a join would make it open every table on the server.)"""
        rows = self.query(
            "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {_literal(database)} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        )
        return [bytes.fromhex(row[0]).decode() for row in rows]

    def row_counts(self, database: str) -> dict[str, int] | None:
        """Exact row count of every base table, or None when there is no such database: one client
        call (the counting statement is built and run on the server)."""
        schema = _literal(database)
        rows = self.query(
            f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {schema}; "
            "SET SESSION group_concat_max_len = 67108864; "
            "SET @wpfarm_counts = (SELECT GROUP_CONCAT(CONCAT('SELECT ', QUOTE(HEX(TABLE_NAME)), ', COUNT(*) FROM `', "
            "REPLACE(TABLE_SCHEMA, '`', '``'), '`.`', REPLACE(TABLE_NAME, '`', '``'), '`') SEPARATOR ' UNION ALL ') "
            f"FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} AND TABLE_TYPE = 'BASE TABLE'); "
            "SET @wpfarm_counts = IFNULL(@wpfarm_counts, 'SELECT 1, 1 FROM DUAL WHERE FALSE'); "
            "PREPARE wpfarm_counts FROM @wpfarm_counts; EXECUTE wpfarm_counts; DEALLOCATE PREPARE wpfarm_counts"
        )
        if rows[0][0] == "0":
            return None
        # Names travel as hex: a site's own user may name a table with a tab or a newline in it.
        return dict(sorted((bytes.fromhex(name).decode(), int(count)) for name, count in rows[1:]))

    def checksums(self, database: str) -> dict[str, str]:
        """CHECKSUM TABLE of every base table: equal data gives equal checksums."""
        tables = self.tables(database)
        if not tables:
            return {}
        rows = self.query("CHECKSUM TABLE " + ", ".join(f"{_quote(database)}.{_quote(t)}" for t in tables))
        return {name.split(".", 1)[1]: value for name, value in rows}

    def create_database(self, database: str) -> None:
        self.query(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")

    def drop_database(self, database: str) -> None:
        self.query(f"DROP DATABASE IF EXISTS {_quote(database)}")

    def execute(self, sql: str) -> str:
        """Run SQL read from stdin: statements that carry a secret never go on a command line."""
        argv = self._argv("mariadb") + ["--batch", "--skip-column-names", "--raw"]
        return run(self.runner, argv, input=sql.encode(), secret=self._secret, timeout=self.stall_timeout)

    def user_exists(self, user: str, host: str) -> bool:
        rows = self.query(f"SELECT COUNT(*) FROM mysql.user WHERE User = {_literal(user)} AND Host = {_literal(host)}")
        return rows[0][0] != "0"

    def provision_site(self, database: str, user: str, host: str, password: str | None, privileges: str) -> None:
        """The database, and `user`@`host` with `privileges` on it alone; password None keeps the user's."""
        account = f"{_literal(validate_identifier(user))}@{_literal(host)}"
        statements = [f"CREATE DATABASE IF NOT EXISTS {_quote(validate_identifier(database))} "
                      "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"]
        if password is not None:
            statements += [f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_literal(password)}",
                           f"ALTER USER {account} IDENTIFIED BY {_literal(password)}"]
        # In a GRANT's database name _ and % are wildcards: wp_a_b would also cover wpxaxb.
        pattern = database.replace("_", "\\_").replace("%", "\\%")
        statements.append(f"GRANT {privileges} ON {_quote(pattern)}.* TO {account}")
        self.execute(";\n".join(statements) + ";\n")


class MariaDBResource(dg.ConfigurableResource):
    """Connection to the farm's MariaDB (through ProxySQL/Galera in production)."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str | None = None
    stall_timeout: float = 300  # backup.stall_timeout

    def client(self, runner: Runner) -> MariaDB:
        return MariaDB(runner, self.host, self.port, self.user, self.password, self.stall_timeout)
