"""MariaDB through its own client tools (mariadb-dump, mariadb), run locally or on the database node.

Commands are argument lists. The password never appears on a command line or in the environment:
it is handed to the client as an option file read from a pipe (`--defaults-extra-file`).
Database and table names are validated identifiers before they reach SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import pymysql

from resources.ssh import SECRET_FILE, Process, Runner, run
from wpfarm_assets.core.config import validate_identifier
from wpfarm_assets.core.errors import WpfarmError

DUMP_OPTIONS = [
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--skip-dump-date",
]
GTID_OPTIONS = ["--master-data=2", "--gtid"]
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

    def dump_argv(self, database: str, gtid: bool = False) -> list[str]:
        """With `gtid` (the server writes binary logs), the dump also records the GTID position its
        snapshot is consistent with (a comment, `-- SET GLOBAL gtid_slave_pos='…'`). MariaDB takes
        it from the consistent snapshot (binlog_snapshot_*), with no FLUSH TABLES WITH READ LOCK."""
        return (self._argv("mariadb-dump") + DUMP_OPTIONS + (GTID_OPTIONS if gtid else [])
                + ["--", validate_identifier(database)])

    def dump(self, database: str, gtid: bool = False) -> Process:
        return self.runner.start(self.dump_argv(database, gtid), secret=self._secret)

    @property
    def secret(self) -> bytes | None:
        """The option file with the password, for a command run with `SECRET_FILE` in its argv."""
        return self._secret

    def binlog_fetch_argv(self, names: list[str], folder: str) -> list[str]:
        """mariadb-binlog reading binary logs from the server (the replication protocol, which needs
        REPLICATION SLAVE) into `folder`/<name>, byte for byte."""
        return self._argv("mariadb-binlog") + ["--read-from-remote-server", "--raw", f"--result-file={folder}/",
                                               "--", *names]

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

    def client(self, runner: Runner, address: str | None = None) -> MariaDB:
        """A client of `database.host`, or of one node (host:port) of the cluster."""
        host, port = (address.rpartition(":")[0], int(address.rpartition(":")[2])) if address else (self.host, self.port)
        return MariaDB(runner, host, port, self.user, self.password, self.stall_timeout)

    def node(self, address: str) -> Node:
        return Node(address, self.user, self.password, min(60.0, self.stall_timeout))

    def source(self, runner: Runner, galera_nodes: list[str]) -> tuple[MariaDB, NodeStatus | None, list[str]]:
        """Where dumps and binary logs come from: with Galera nodes, the first that is Synced (its
        client, its status, and why the nodes before it were passed over); else `host` (and its
        status, when it answers: a standalone server with binary logging also gives GTIDs)."""
        if galera_nodes:
            node, status, passed = choose_node([self.node(a) for a in galera_nodes])
            node.close()
            return self.client(runner, node.address), status, passed
        status = None  # over SSH, host is the node's own address: the node's client tools alone reach it
        if runner.where == "local":
            node = self.node(f"{self.host}:{self.port}")
            try:
                status = node.status()
            except NodeError:
                pass  # the dump itself says why, as it always did
            node.close()
        return self.client(runner), status, []


class NodeError(WpfarmError):
    """A database node that cannot be reached or refuses what wpfarm asks; the message names it."""


@dataclass(frozen=True)
class NodeStatus:
    """What wpfarm needs to know of one database server before it dumps or archives from it."""

    address: str  # host:port
    state: str  # Galera's wsrep_local_state_comment ("Synced", "Donor/Desynced", ...), or "standalone"
    cluster_size: int
    flow_control_paused: float  # fraction of time since the last FLUSH STATUS paused by flow control
    log_bin: bool
    log_slave_updates: bool
    binlog_format: str
    gtid_domain: int  # the domain the cluster's (or server's) writes carry
    wsrep_gtid_mode: bool
    gtid_binlog_pos: str

    @property
    def galera(self) -> bool:
        return self.state != "standalone"

    @property
    def usable(self) -> bool:
        return self.state in ("Synced", "standalone")

    @property
    def pitr_problem(self) -> str | None:
        """Why binary logs from this server cannot give point-in-time recovery, or None."""
        if not self.log_bin:
            return f"binary logging is off on {self.address} (log_bin)"
        if self.binlog_format != "ROW":
            return f"binlog_format is {self.binlog_format} on {self.address}, not ROW"
        if self.galera and not (self.wsrep_gtid_mode and self.log_slave_updates):
            return (f"{self.address} does not write the cluster's writes with cluster-wide GTIDs "
                    "(wsrep_gtid_mode and log_slave_updates must be ON)")
        return None


class Node:
    """The SQL wpfarm runs itself on one server (pymysql): status, GTID positions, binary logs.
    Every connection has connect and read deadlines (`timeout`): a hung node fails, it never holds."""

    def __init__(self, address: str, user: str, password: str | None, timeout: float = 30):
        host, _, port = address.rpartition(":")
        self.address, self.host, self.port = address, host, int(port)
        self.user, self._password, self.timeout = user, password or "", timeout
        self._conn = None

    def _connect(self):
        try:
            return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self._password,
                                   connect_timeout=max(1, min(10, int(self.timeout))), read_timeout=self.timeout,
                                   write_timeout=self.timeout, autocommit=True)
        except pymysql.MySQLError as exc:
            raise NodeError(f"database node {self.address}: {_reason(exc)}") from None

    def rows(self, *statements: str) -> list[tuple]:
        """The rows of the last statement, each run in turn on the node's connection (opened on first
        use, kept until `close`; a failed statement closes it)."""
        if self._conn is None:
            self._conn = self._connect()
        try:
            with self._conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return list(cursor.fetchall())
        except pymysql.MySQLError as exc:
            self.close()
            raise NodeError(f"database node {self.address}: {_reason(exc)}") from None

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except pymysql.MySQLError:
                pass  # a connection the server already dropped
            self._conn = None

    def status(self) -> NodeStatus:
        variables = dict(self.rows(
            "SELECT 'log_bin', @@log_bin UNION ALL SELECT 'log_slave_updates', @@log_slave_updates "
            "UNION ALL SELECT 'binlog_format', @@binlog_format UNION ALL SELECT 'gtid_domain_id', @@gtid_domain_id "
            "UNION ALL SELECT 'wsrep_on', @@wsrep_on UNION ALL SELECT 'wsrep_gtid_mode', @@wsrep_gtid_mode "
            "UNION ALL SELECT 'wsrep_gtid_domain_id', @@wsrep_gtid_domain_id "
            "UNION ALL SELECT 'gtid_binlog_pos', @@gtid_binlog_pos"))
        wsrep = dict(self.rows("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', "
                               "'wsrep_cluster_size', 'wsrep_flow_control_paused', 'wsrep_ready')"))
        galera = str(variables["wsrep_on"]) == "1"
        gtid_mode = galera and str(variables["wsrep_gtid_mode"]) == "1"
        state = "standalone" if not galera else wsrep.get("wsrep_local_state_comment", "unknown")
        if galera and wsrep.get("wsrep_ready") != "ON" and state == "Synced":
            state = "not ready"
        return NodeStatus(
            address=self.address, state=state, cluster_size=int(wsrep.get("wsrep_cluster_size") or 0),
            flow_control_paused=float(wsrep.get("wsrep_flow_control_paused") or 0),
            log_bin=str(variables["log_bin"]) == "1", log_slave_updates=str(variables["log_slave_updates"]) == "1",
            binlog_format=str(variables["binlog_format"]),
            gtid_domain=int(variables["wsrep_gtid_domain_id"] if gtid_mode else variables["gtid_domain_id"]),
            wsrep_gtid_mode=gtid_mode, gtid_binlog_pos=str(variables["gtid_binlog_pos"] or ""))

    def flush_binary_logs(self) -> list[tuple[str, int]]:
        """Close the current binary log (a new one starts) and list them all, oldest first:
        every file but the last is closed. FLUSH BINARY LOGS is local to this node."""
        return [(name, int(size)) for name, size, *_ in self.rows("FLUSH BINARY LOGS", "SHOW BINARY LOGS")]


def _reason(exc: Exception) -> str:
    """pymysql's error as one line an operator reads (its code and the server's words)."""
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (error {args[0]})"
    return str(exc) or type(exc).__name__


def choose_node(nodes: list[Node]) -> tuple[Node, NodeStatus, list[str]]:
    """The first node that can serve (Synced, or a standalone server), its status, and why each
    node before it was passed over (down, donor, desynced, joining)."""
    passed = []
    for node in nodes:
        try:
            status = node.status()
        except NodeError as exc:
            passed.append(str(exc))
            continue
        if status.usable:
            return node, status, passed
        node.close()
        passed.append(f"database node {node.address}: {status.state}")
    raise NodeError("no database node can serve: " + "; ".join(passed))
