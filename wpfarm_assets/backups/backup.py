"""Back up one site: its database (`db`) as one encrypted object, its files (`files`) as a snapshot in
the site's restic repository; each with a manifest.

Plain functions, no Dagster: the assets and the benchmarks call them. The manifest is written last;
a backup exists only if its manifest does (a snapshot without one is an aborted backup).
`archive_files` writes the files format before the file store (tar → zstd → gpg, one object per
night): such backups are still read, restored and retained; the tests and benchmarks make them.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from resources.gpg import gpg_version
from resources.mariadb import COMPLETION_MARKER, MariaDB, NodeStatus
from resources.object_store import Store, StoreError, exists
from resources.restic import QUIET_COMMAND_FACTOR, Repository
from resources.ssh import Runner, run
from wpfarm_assets.backups.identity import identity_problem, known_addresses, read_addresses, record_identity
from wpfarm_assets.backups.pipeline import COMPRESSION_LEVEL, STALL_TIMEOUT, StreamStats, back_up_stream, zstd_version
from wpfarm_assets.core.config import Site
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import (
    BackupKey,
    parse_manifest_key,
    repository_prefix,
    restoring_key,
    site_prefix,
    snapshot_ids,
)
from wpfarm_assets.core.manifest import Manifest

# Left out of every file archive: caches, WordPress's own upgrade scratch space, backup plugins'
# folders (backups of backups) and logs. Patterns are anchored at the site root.
FILE_EXCLUDES = [
    "wp-content/cache",
    "wp-content/upgrade",
    "wp-content/updraft",
    "wp-content/ai1wm-backups",
    "wp-content/backups-dup-lite",
    "wp-content/backup-db",
    "wp-content/backups",
    "wp-content/uploads/backwpup-*",
    "wp-content/wpvividbackups",
    "*.log",
]


# The end of a dump, kept: its completion marker, and the GTID position its snapshot is consistent
# with (`-- SET GLOBAL gtid_slave_pos='…'`, which mariadb-dump writes last with --master-data --gtid).
DUMP_TAIL_BYTES = 4096


class BackupError(WpfarmError):
    """A site's backup failed. The message names the site, the kind and the cause."""


@dataclass(frozen=True)
class Backup:
    key: BackupKey
    manifest: Manifest


_remote_versions: dict[tuple[str, str], str] = {}


def _tool_version(runner: Runner, tool: str) -> str:
    where = runner.where
    if (where, tool) not in _remote_versions:
        try:
            argv = [tool, "version"] if tool == "restic" else [tool, "--version"]
            _remote_versions[where, tool] = run(runner, argv).strip().splitlines()[0]
        except Exception:  # noqa: BLE001 - a version string is informational only
            _remote_versions[where, tool] = "unknown"
    return _remote_versions[where, tool]


def _write_manifest(store: Store, key: BackupKey, started: datetime, stats: StreamStats, fingerprint: str,
                    source: Runner, tools: dict, content: dict) -> Manifest:
    manifest = Manifest(
        site=key.site,
        kind=key.kind,
        object_key=key.data_key,
        started_at=started.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(),
        plaintext_bytes=stats.plaintext_bytes,
        stored_bytes=stats.stored_bytes,
        sha256=stats.sha256,
        duration_seconds=round(stats.seconds, 3),
        compression=f"zstd -{COMPRESSION_LEVEL}",
        key_fingerprint=fingerprint,
        source=source.where,
        tools={**tools, "zstd": zstd_version(), "gpg": gpg_version()},
        **content,
    )
    store.put_bytes(key.manifest_key, manifest.to_bytes())
    return manifest


def back_up_database(site: Site, db: MariaDB, store: Store, encrypt_argv: list[str], fingerprint: str,
                     now: datetime | None = None, server: NodeStatus | None = None) -> Backup:
    """mariadb-dump → zstd → gpg → store; then the manifest with every table's row count, counted
    before the dump and again after it: the dump's snapshot lies between the two (a live site's
    tables change meanwhile; `tables_after` holds those that did). The stream's stall deadline is
    the client's (`db.stall_timeout`, backup.stall_timeout). When `server` (its status) writes
    binary logs, the manifest records the GTID position the dump is consistent with: point-in-time
    recovery replays the archived logs from there."""
    started = now or datetime.now(timezone.utc)
    key = BackupKey(site.name, "db", started)
    with_gtid = server is not None and server.log_bin
    try:
        refuse_half_restored(store, site.name, "db")
        tables = db.row_counts(site.database)
        if tables is None:
            raise BackupError(f"database {site.database!r} does not exist on {db.runner.where}")
        tail = bytearray()

        def keep_tail(chunk: bytes) -> None:
            tail.extend(chunk[-DUMP_TAIL_BYTES:])
            del tail[:-DUMP_TAIL_BYTES]

        def completed() -> None:
            if not bytes(tail).rstrip().endswith(COMPLETION_MARKER):
                raise BackupError("the dump stream ended without mariadb-dump's completion marker (truncated)")

        snapshot_at = datetime.now(timezone.utc)  # the row counts take a while on a big site: the dump starts now
        stats = back_up_stream(db.dump(site.database, with_gtid), encrypt_argv, store, key.data_key, keep_tail,
                               completed, stall_timeout=db.stall_timeout)
        tools = {"mariadb-dump": _tool_version(db.runner, "mariadb-dump"), "server": db.version()}
        try:  # best effort: the dump is good whatever this says
            after = db.row_counts(site.database)
        except WpfarmError:
            after = None
        changed = {} if after is None else {t: after.get(t, -1) for t in set(tables) | set(after)
                                            if tables.get(t) != after.get(t)}
        try:
            addresses = read_addresses(db, site.database, tables)
        except WpfarmError:  # the dump is good without them; nothing to judge
            addresses = {}
        before = _newest_manifest(store, site.name)
        # What the site said before (and farm.yaml's addresses for it); a site whose dumps predate
        # the record starts it with this one.
        known = (None if before is None else before.site_addresses if before.site_addresses is not None
                 else sorted(set(addresses.values())) or None)
        known = sorted({*(known or []), *site.addresses}) or None
        identity = identity_problem(site.name, addresses, known)
        content = {"database": site.database, "tables": tables, "dump_complete": True, **addresses,
                   "site_addresses": known_addresses(site.name, addresses, known), "identity": identity,
                   **({"tables_after": changed} if changed else {}),
                   **({"database_node": server.address, "node_state": server.state} if server else {})}
        if with_gtid:
            match = re.search(rb"gtid_slave_pos='([0-9,-]*)'", bytes(tail))
            if match is None:
                raise BackupError("the dump does not say which GTID position it is consistent with")
            content.update(gtid=match[1].decode(), gtid_domain=server.gtid_domain, snapshot_at=snapshot_at.isoformat())
        if identity:  # before the manifest: a backup is never seen without its flag
            record_identity(store, key, identity)
        manifest = _write_manifest(store, key, started, stats, fingerprint, db.runner, tools, content)
    except Exception as exc:
        raise BackupError(f"site {site.name}: database backup failed: {exc}") from exc
    return Backup(key, manifest)


def _newest_manifest(store: Store, site: str) -> Manifest | None:
    """The site's newest readable database manifest, or None (the first dump, or none readable)."""
    keys = sorted((k for k in (parse_manifest_key(o.key) for o in store.list(site_prefix(site, "db"))) if k), reverse=True)
    for key in keys[:3]:
        try:
            return Manifest.from_bytes(store.get_bytes(key.manifest_key), key.manifest_key)
        except WpfarmError:
            continue
    return None


def site_members(runner: Runner, site: Site) -> tuple[str, list[str], list[str]]:
    """(the site root, what a files backup holds relative to it, the excludes as restic takes them:
    absolute paths under the root, and `*.log` anywhere)."""
    if not runner.exists(site.content_path):
        raise BackupError(f"content path {site.content_path} does not exist on {runner.where}")
    root, content = posixpath.split(site.content_path)
    members = [content] + (["wp-config.php"] if runner.exists(posixpath.join(root, "wp-config.php")) else [])
    excludes = [p.replace("wp-content/", f"{content}/", 1) for p in FILE_EXCLUDES]
    return root, members, [p if p.startswith("*") else posixpath.join(root, p) for p in excludes]


def back_up_files(site: Site, runner: Runner, store: Store, repository: Repository,
                  now: datetime | None = None, max_file_bytes: int = 4 << 30) -> Backup:
    """A restic snapshot of wp-content (+ wp-config.php) in the site's repository (made on its first
    backup), incremental against the site's last snapshot; then the manifest. restic runs through
    `runner`, where the files are. Files over `max_file_bytes` are left out and named in the
    manifest (`skipped`); the stored bytes are what the repository grew by."""
    started = now or datetime.now(timezone.utc)
    key = BackupKey(site.name, "files", started)
    prefix = repository_prefix(site.name)
    try:
        refuse_half_restored(store, site.name, "files")
        root, members, excludes = site_members(runner, site)
        if not any(True for _ in store.list(prefix + "config")):
            repository.init()
        skipped = _large_files(runner, root, members, excludes, max_file_bytes,
                               repository.stall_timeout * QUIET_COMMAND_FACTOR)
        before = sum(o.size for o in store.list(prefix))
        clock = time.monotonic()
        summary = repository.backup(root, members, excludes, started, max_file_bytes)
        seconds = time.monotonic() - clock
        found = [i for i in snapshot_ids((o.key for o in store.list(prefix + "snapshots/")), site.name)
                 if i.startswith(summary["snapshot_id"])]
        if len(found) != 1:
            raise BackupError(f"restic reported snapshot {summary['snapshot_id']}, which the repository lists "
                              f"{len(found)} times")
        manifest = Manifest(
            site=key.site,
            kind=key.kind,
            started_at=started.isoformat(),
            finished_at=datetime.now(timezone.utc).isoformat(),
            plaintext_bytes=summary["total_bytes_processed"],
            stored_bytes=max(0, sum(o.size for o in store.list(prefix)) - before),
            duration_seconds=round(seconds, 3),
            compression="restic (zstd, repository version 2)",
            source=runner.where,
            tools={"restic": _tool_version(runner, "restic")},
            repository=repository.url,
            snapshot_id=found[0],
            files=summary["total_files_processed"],
            files_new=summary["files_new"],
            files_changed=summary["files_changed"],
            files_unmodified=summary["files_unmodified"],
            files_vanished=summary["vanished"],
            skipped=skipped,
            content_path=site.content_path,
            wp_config="wp-config.php" in members,
        )
        store.put_bytes(key.manifest_key, manifest.to_bytes())
    except Exception as exc:
        raise BackupError(f"site {site.name}: files backup failed: {exc}") from exc
    return Backup(key, manifest)


def _large_files(runner: Runner, root: str, members: list[str], excludes: list[str], limit: int,
                 timeout: float) -> list[dict]:
    """The files over `limit` that a files backup leaves out (restic's --exclude-larger-than), the
    excluded folders passed over, as [{path, bytes}], at most 50. Files that go away while find
    walks (a live site) are not an error."""
    pruned = [arg for pattern in excludes for arg in ("-o", "-path", pattern)][1:]
    out = run(runner, ["find", *(posixpath.join(root, m) for m in members), "-ignore_readdir_race",
                       "(", *pruned, ")", "-prune", "-o", "-type", "f", "-size", f"+{limit}c",
                       "-printf", "%s %p\\0"], timeout=timeout)
    entries = [entry.split(" ", 1) for entry in out.split("\0") if entry]
    return [{"path": path, "bytes": int(size)} for size, path in entries[:50]]


def tar_argv(content_path: str, with_wp_config: bool) -> list[str]:
    """tar of wp-content (and wp-config.php) relative to the site root, excludes anchored there."""
    root, content = posixpath.split(content_path)
    excludes = [p.replace("wp-content/", f"{content}/", 1) for p in FILE_EXCLUDES]
    members = [content] + (["wp-config.php"] if with_wp_config else [])
    return (
        # pax format with --sparse: holes are stored as holes (an 8 GiB sparse file is not 8 GiB of
        # zeros), and the sparse map is inside the member's data, so TarCounter's block walk holds.
        # Header names without tar's pid, and no atime/ctime: the same tree gives the same archive.
        ["tar", "--create", "--file=-", "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
         "--sparse", f"--directory={root}", "--anchored"]
        + [f"--exclude={p}" for p in excludes]
        + ["--"]
        + members
    )


class ForgedArchive(WpfarmError):
    """An archive holds what no WordPress site does (a device node, a FIFO, a set-id file, a path or
    link out of its folder): a forged or corrupted backup. Nothing of it is restored."""


class TarCounter:
    """Counts regular files in a tar stream as it passes, block by block, without buffering member data.
    Extended headers (pax `x`, GNU long names `L`/`K`) are read, since they change the next member's
    size, name or link. With `guard`, refuses (ForgedArchive) a member no site's files can hold,
    before tar sees it: device nodes, FIFOs, set-id files, paths or links out of the folder."""

    EXTENDED = (b"x", b"L", b"K")
    KNOWN = (b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"x", b"L", b"K", b"S")
    MAX_EXTENDED = 1 << 20  # bytes an extended header may hold (names, pax records)

    def __init__(self, guard: bool = False) -> None:
        self.guard = guard
        self.files = 0
        self.ended = False  # saw the end-of-archive (zero) block, with nothing after it but zeros
        self._skip = 0  # bytes of member data (and padding) still to pass
        self._header = bytearray()
        self._collect = 0  # bytes of an extended header's data still to read
        self._extended = bytearray()
        self._extended_kind = b""
        self._pending: dict[str, str] = {}  # what extended headers say of the next member

    @property
    def complete(self) -> bool:
        """Whether the stream ended where a tar archive may end (not inside a member)."""
        return self.ended and not self._skip and not self._header and not self._collect

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._collect:
                step = min(self._collect, len(view))
                self._extended += view[:step]
                self._collect -= step
                view = view[step:]
                if not self._collect:
                    self._read_extended()
                continue
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 512 - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) == 512:
                self._parse(bytes(self._header))
                self._header.clear()

    def _parse(self, header: bytes) -> None:
        if header == b"\0" * 512:
            self.ended = True
            return
        self.ended = False
        field = header[124:136]
        if field[0] & 0x80:  # base-256 for large sizes
            size = int.from_bytes(field[1:], "big")
        else:
            size = int(field.rstrip(b"\0 ").strip() or b"0", 8)
        kind = header[156:157]
        padding = (size + 511) // 512 * 512 - size
        if kind in self.EXTENDED:
            if size > self.MAX_EXTENDED:
                raise ForgedArchive(f"the archive holds an extended header of {size} bytes")
            self._extended_kind, self._extended = kind, bytearray()
            self._collect, self._skip = size, padding
            if not size:
                self._read_extended()
            return
        pending, self._pending = self._pending, {}
        if "size" in pending:
            size = int(pending["size"])
            padding = (size + 511) // 512 * 512 - size
        if self.guard:
            self._refuse_forged(header, kind, pending)
        if kind in (b"0", b"\0", b"7"):
            self.files += 1
        self._skip = size + padding

    def _read_extended(self) -> None:
        data = bytes(self._extended)
        if self._extended_kind == b"L":
            self._pending["path"] = data.split(b"\0", 1)[0].decode(errors="replace")
        elif self._extended_kind == b"K":
            self._pending["linkpath"] = data.split(b"\0", 1)[0].decode(errors="replace")
        else:  # pax records: "<length> <key>=<value>\n"
            while data:
                length, _, rest = data.partition(b" ")
                try:
                    n = int(length)
                except ValueError:
                    raise ForgedArchive("the archive holds a malformed pax header") from None
                record, data = rest[: n - len(length) - 1], data[n:]
                key, _, value = record.rstrip(b"\n").partition(b"=")
                if key in (b"path", b"linkpath", b"size"):
                    self._pending[key.decode()] = value.decode(errors="replace")
        self._extended = bytearray()

    def _refuse_forged(self, header: bytes, kind: bytes, pending: dict[str, str]) -> None:
        name = header[0:100].split(b"\0", 1)[0].decode(errors="replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode(errors="replace") if header[257:262] == b"ustar" else ""
        path = pending.get("path") or (f"{prefix}/{name}" if prefix else name)
        link = pending.get("linkpath") or header[157:257].split(b"\0", 1)[0].decode(errors="replace")
        if kind not in self.KNOWN:
            raise ForgedArchive(f"the archive holds a member of unknown type {kind!r} ({path!r})")
        if kind in (b"3", b"4", b"6"):
            what = {b"3": "a character device", b"4": "a block device", b"6": "a FIFO"}[kind]
            raise ForgedArchive(f"the archive holds {what} ({path!r})")
        mode = int(header[100:108].rstrip(b"\0 ").strip() or b"0", 8)
        if mode & 0o4000 or (mode & 0o2000 and kind != b"5"):  # a setgid folder is a shared group's, and fine
            raise ForgedArchive(f"the archive holds a set-user/group-id file ({path!r}, mode {mode:o})")
        if path.startswith("/") or ".." in path.split("/"):
            raise ForgedArchive(f"the archive holds a path outside its folder ({path!r})")
        if kind in (b"1", b"2"):
            # A hard link names another member; a symbolic link resolves from the member's folder.
            base = "" if kind == b"1" else posixpath.dirname(path)
            resolved = posixpath.normpath(posixpath.join(base, link))
            if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ForgedArchive(f"the archive holds a link out of its folder ({path!r} -> {link!r})")


def archive_files(site: Site, runner: Runner, store: Store, encrypt_argv: list[str], fingerprint: str,
                  now: datetime | None = None, stall_timeout: float = STALL_TIMEOUT) -> Backup:
    """The files format before the file store: tar of wp-content (+ wp-config.php) → zstd → gpg →
    store; then the manifest with the file count."""
    started = now or datetime.now(timezone.utc)
    key = BackupKey(site.name, "files", started)
    try:
        _, members, _ = site_members(runner, site)
        with_config = "wp-config.php" in members
        counter = TarCounter()
        proc = runner.start(tar_argv(site.content_path, with_config))

        def completed() -> None:
            if not counter.complete:
                raise BackupError("the tar stream ended inside the archive (truncated)")

        # GNU tar exits 1 when a file changed or vanished while it was read (a live site); the
        # archive is still whole, which `completed` checks, so that status is accepted.
        stats = back_up_stream(proc, encrypt_argv, store, key.data_key, counter.feed, completed, frozenset({0, 1}),
                               stall_timeout)
        tools = {"tar": _tool_version(runner, "tar")}
        content = {"content_path": site.content_path, "files": counter.files, "wp_config": with_config}
        manifest = _write_manifest(store, key, started, stats, fingerprint, runner, tools, content)
    except Exception as exc:
        raise BackupError(f"site {site.name}: files backup failed: {exc}") from exc
    return Backup(key, manifest)


# Interrupted restores (keys.restoring_key): a restore writes the record just before it first
# overwrites the live site, and removes it when it completes. While it is there the site may be
# half-restored: status and the age check say so (critical), and backups of it are refused.

def mark_restoring(store: Store, site: str, kind: str, run_id: str) -> None:
    """Record that a restore is about to overwrite the live site's `kind` (keys.restoring_key)."""
    record = {"site": site, "kind": kind, "run_id": run_id, "started_at": datetime.now(timezone.utc).isoformat()}
    store.put_bytes(restoring_key(site, kind), json.dumps(record).encode())


def clear_restoring(store: Store, site: str, kind: str) -> None:
    """A restore of the live site's `kind` completed: it is whole again."""
    store.delete([restoring_key(site, kind)])


def refuse_half_restored(store: Store, site: str, kind: str) -> None:
    """A BackupError when the site's `kind` may be half-restored: a backup would record the damage
    as a good restore point."""
    if problem := restoring(store, site, kind):
        what = "database" if kind == "db" else "files"
        raise BackupError(f"refused: {problem}; its {what} may be half-restored, and a backup would record that "
                          "as a good restore point: restore it again first")


def restoring(store: Store, site: str, kind: str) -> str | None:
    """Why the site's `kind` may be half-restored (an interrupted restore), or None."""
    key = restoring_key(site, kind)
    if not exists(store, key):
        return None
    try:
        record = json.loads(store.get_bytes(key))
        return f"a restore into the live site (run {record['run_id']}) began at {record['started_at']} and did not complete"
    except (ValueError, KeyError, StoreError):
        return "a restore into the live site began and did not complete"
