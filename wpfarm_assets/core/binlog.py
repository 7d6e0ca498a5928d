"""MariaDB binary logs, as far as point-in-time recovery needs them: GTIDs and positions, and a reader
of the binlog file format that finds, in one pass over the bytes as they stream by, each
transaction's GTID, offset and time, the GTID state a file starts from, its first and last event
time, and the statements that `mariadb-binlog --database` would drop.

Plain Python, no server: the format is MariaDB's (binlog v4 events: a 19-byte header of timestamp,
type, server id, length, next position, flags; GTID events 162, GTID list events 163). Reading
the file ourselves costs nothing extra while it is archived, and gives exact byte offsets at
transaction boundaries to hand to `mariadb-binlog --start-position/--stop-position` on replay.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

from wpfarm_assets.core.errors import WpfarmError

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, event length, next position, flags
QUERY_EVENT, ROTATE_EVENT, FORMAT_DESCRIPTION_EVENT, XID_EVENT = 2, 4, 15, 16
GTID_EVENT, GTID_LIST_EVENT = 162, 163
QUERY_TEXT_LIMIT = 64 << 10  # bytes of a statement kept for the trap check (DDL is short; rows are events)
_READ = frozenset({FORMAT_DESCRIPTION_EVENT, GTID_EVENT, GTID_LIST_EVENT, ROTATE_EVENT})  # read whole
_GTID_BODY = struct.Struct("<QI")  # a GTID event's sequence number and domain


class BinlogError(WpfarmError):
    """A binary log that cannot be read, or a GTID that does not parse."""


class Gtid(NamedTuple):
    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Gtid:
        try:
            domain, server, seq = (int(part) for part in text.strip().split("-"))
        except ValueError:
            raise BinlogError(f"{text!r} is not a GTID (domain-server-sequence)") from None
        return cls(domain, server, seq)


def parse_position(text: str) -> dict[int, Gtid]:
    """A GTID position or binlog state as MariaDB prints it (`0-1-5,1-1-9`, `[1-2-7,1-1-9]`, or
    empty): the furthest GTID per domain (a state lists one per domain and server)."""
    return furthest(Gtid.parse(part) for part in text.replace("[", "").replace("]", "").split(",") if part.strip())


def furthest(gtids) -> dict[int, Gtid]:
    position: dict[int, Gtid] = {}
    for g in gtids:
        if g.domain not in position or g.seq > position[g.domain].seq:
            position[g.domain] = g
    return position


def seq_in(position: dict[int, Gtid], domain: int) -> int:
    """The sequence number a position has reached in `domain` (0: nothing yet)."""
    return position[domain].seq if domain in position else 0


@dataclass
class Transaction:
    offset: int  # byte offset of its GTID event: a boundary for --start-position/--stop-position
    time: int  # unix seconds of its GTID event
    gtid: Gtid


@dataclass
class Statement:
    """A statement (query) event: the database it ran in (`USE`) and its text, with its transaction."""

    gtid: Gtid | None
    database: str
    text: str


class BinlogReader:
    """Fed the bytes of one binary log file in order (`feed`), reads every event header and the few
    event bodies it needs. Keeps every transaction only with `keep_transactions` (restore needs the
    offsets; archiving only the first and last); passes each statement event to `on_statement`."""

    def __init__(self, keep_transactions: bool = False, on_statement: Callable[[Statement], None] | None = None):
        self.keep_transactions = keep_transactions
        self.on_statement = on_statement
        self.start_state: dict[int, Gtid] | None = None  # the GTID list event: where the file starts
        self.transactions: list[Transaction] = []
        self.first_gtid: Gtid | None = None
        self.last_gtid: Gtid | None = None
        self.gtid_count = 0
        self.first_time: int | None = None
        self.last_time: int | None = None
        self.rotated_to: str | None = None  # the rotate event closing the file names the next one
        self.bytes = 0
        self._buffer = bytearray()
        self._offset = 0  # file offset of the start of _buffer
        self._skip = 0  # bytes of the current event's body still to pass without keeping
        self._checksum = 0  # trailing bytes per event (4 with CRC32)
        self._current: Gtid | None = None
        self._magic = False
        self._furthest: dict[int, Gtid] = {}
        self.first_seen: dict[int, Gtid] = {}  # each domain's first GTID in the file

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        view = memoryview(chunk)
        if self._skip:
            step = min(self._skip, len(view))
            self._skip -= step
            self._offset += step
            view = view[step:]
        self._buffer += view
        self._parse()

    def _parse(self) -> None:
        buffer = self._buffer
        if not self._magic:
            if len(buffer) < 4:
                return
            if bytes(buffer[:4]) != MAGIC:
                raise BinlogError("not a MariaDB binary log (no magic number)")
            del buffer[:4]
            self._offset, self._magic = 4, True
        # Events are read where they lie in the buffer, and what was read is cut off once at the end:
        # a row-based log has hundreds of thousands of small events, each read here.
        pos, size, unpack = 0, len(buffer), HEADER.unpack_from
        wanted = self.on_statement is not None
        try:
            while size - pos >= HEADER.size:
                timestamp, kind, server, length, _next, _flags = unpack(buffer, pos)
                if length < HEADER.size:
                    raise BinlogError(f"a binary log event at offset {self._offset + pos} has a length of {length}")
                if kind in _READ:
                    needed = length
                elif kind == QUERY_EVENT and wanted:
                    needed = min(length, HEADER.size + QUERY_TEXT_LIMIT)
                else:
                    needed = HEADER.size
                if size - pos < needed:
                    return
                if timestamp:  # artificial events (the rotate a remote read starts with) carry 0
                    self.first_time = self.first_time or timestamp
                    self.last_time = timestamp
                if kind == GTID_EVENT:  # the most frequent event read: here, without a copy
                    self._gtid(self._offset + pos, timestamp, server, *_GTID_BODY.unpack_from(buffer, pos + HEADER.size))
                elif needed > HEADER.size or (kind == XID_EVENT and wanted):
                    self._event(self._offset + pos, timestamp, kind, server, length, bytes(buffer[pos:pos + needed]))
                if size - pos < length:  # the rest of this event is in the chunks to come
                    self._skip = length - (size - pos)
                    pos = size
                    return
                pos += length
        finally:
            del buffer[:pos]
            self._offset += pos

    def _gtid(self, offset: int, timestamp: int, server: int, seq: int, domain: int) -> None:
        gtid = Gtid(domain, server, seq)
        self._current = gtid
        self.first_gtid = self.first_gtid or gtid
        self.last_gtid = gtid
        self.gtid_count += 1
        if domain not in self._furthest or seq > self._furthest[domain].seq:
            self._furthest[domain] = gtid
        self.first_seen.setdefault(domain, gtid)
        if self.keep_transactions:
            self.transactions.append(Transaction(offset, timestamp, gtid))

    def _event(self, offset: int, timestamp: int, kind: int, server: int, length: int, data: bytes) -> None:
        body = data[HEADER.size:]
        if kind == FORMAT_DESCRIPTION_EVENT:
            self._checksum = 4 if len(body) >= 5 and body[-5] == 1 else 0  # checksum algorithm 1: CRC32
        elif kind == GTID_LIST_EVENT and self.start_state is None:
            count = struct.unpack_from("<I", body)[0] & 0x0FFFFFFF
            entries = [struct.unpack_from("<IIQ", body, 4 + 16 * i) for i in range(count)]
            self.start_state = furthest(Gtid(d, s, q) for d, s, q in entries)
        elif kind == ROTATE_EVENT and timestamp:
            end = len(body) - self._checksum
            self.rotated_to = body[8:end].decode(errors="replace")
        elif kind == QUERY_EVENT and self.on_statement:
            _thread, _exec, db_len, _error, status_len = struct.unpack_from("<IIBHH", body)
            start = 13 + status_len
            database = body[start:start + db_len].decode(errors="replace")
            end = len(body) - (self._checksum if length == len(data) else 0)
            text = body[start + db_len + 1:end].decode(errors="replace")
            self.on_statement(Statement(self._current, database, text))
        elif kind == XID_EVENT:
            self._current = None

    def start_seq(self, domain: int) -> int | None:
        """The domain's sequence number the file starts after: its GTID list's, or (a list without
        the domain, as after RESET MASTER) the one before its first GTID in the domain; None: unknown."""
        if self.start_state and domain in self.start_state:
            return self.start_state[domain].seq
        return self.first_seen[domain].seq - 1 if domain in self.first_seen else None

    @property
    def complete(self) -> bool:
        """Whether what was read ends at an event boundary (a copy cut short ends inside an event)."""
        return self._magic and not self._buffer and not self._skip

    @property
    def end_state(self) -> dict[int, Gtid]:
        """The GTID position at the end of what was read: per domain the furthest of the start state
        and every transaction."""
        return furthest([*(self.start_state or {}).values(), *self._furthest.values()])


def event_time(unix: int | None) -> str | None:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat() if unix else None


# Statements that change no site's data: transaction control, and accounts (provisioning grants a
# site's user `db`.* from no database; a replay that leaves it out loses nothing).
_SKIP = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|XA |SAVEPOINT|RELEASE|FLUSH|SET |GRANT|REVOKE|"
                   r"(CREATE|ALTER|DROP|RENAME) USER)", re.IGNORECASE)


def names_database(text: str, database: str) -> bool:
    """Whether a statement names `database` as a qualifier (`db`.t or db.t): a statement run in
    another database (or none) that changes this one, which `mariadb-binlog --database` drops."""
    if _SKIP.match(text):
        return False
    quoted = re.escape(database)
    return re.search(rf"(`{quoted}`|(?<![\w$`]){quoted})\s*\.", text, re.IGNORECASE) is not None


LOST, UNSAFE = "lost", "unsafe"


def statement_trap(statement: Statement, database: str, others: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """What a replay of `database` alone (`mariadb-binlog --database=DATABASE`) would do wrong with
    this statement event, or None:
    - LOST: run in another database (or none) but naming this one, the filter drops it;
    - UNSAFE: run in this database, so kept, but naming one of `others` (another site's database, a
      system database, or this one when the replay goes elsewhere: --rewrite-db rewrites only the
      USE, never a `db`.table in the text): replayed, it would change that database."""
    gtid = f" (GTID {statement.gtid})" if statement.gtid else ""
    text = repr(statement.text[:120])
    if statement.database != database:
        if names_database(statement.text, database):
            where = f"in database {statement.database!r}" if statement.database else "with no database selected"
            return LOST, f"a statement run {where} changes {database}{gtid}, and a replay of {database} leaves it out: {text}"
        return None
    named = sorted(d for d in others if names_database(statement.text, d))
    if named:
        return UNSAFE, f"a statement of {database}{gtid} names {', '.join(named)}, which its replay would change: {text}"
    return None


# mariadb-binlog gives every transaction its original GTID and server id (executable comments such
# as `/*M!100001 SET @@session.gtid_seq_no=67*//*!*/;`). Replayed as they are, they would write old
# GTIDs into the server's binary log again and move its GTID state backwards: the archive would
# take the next new writes for ones it already holds. A replay drops them, so the server gives
# the replayed transactions new GTIDs of its own, like any other write. (A Galera node refuses any
# SET of the session's server_id, even to its own: replayed as it is, the stream stops there.)
_ORIGINAL_GTID = re.compile(rb"(?m)^(?:/\*M!100001 SET @@session\.(?:gtid_seq_no|gtid_domain_id|server_id)=\d+\*/"
                            rb"/\*!\*/;|/\*!100001 SET @@SESSION\.(?:SERVER_ID=@@GLOBAL\.SERVER_ID|"
                            rb"GTID_DOMAIN_ID=@@GLOBAL\.GTID_DOMAIN_ID) \*/;)\n")


class OriginalGtidFilter:
    """Removes the statements that replay a transaction under its original GTID from mariadb-binlog's
    output, as it streams (lines are kept whole across chunks)."""

    def __init__(self) -> None:
        self._carry = b""
        self.removed = 0

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return self._filter(data[:cut])

    def flush(self) -> bytes:
        data, self._carry = self._carry, b""
        return self._filter(data)

    def _filter(self, data: bytes) -> bytes:
        if b"100001 SET @@" not in data:
            return data
        data, n = _ORIGINAL_GTID.subn(b"", data)
        self.removed += n
        return data
