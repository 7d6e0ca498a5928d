"""Restore one site from its newest good backup (or the newest of a given day, or one named by its
stamp): database, files, or both.

The stored object is checked against its manifest's sha256 before anything is written, so a
corrupted or truncated backup is refused instead of half-restored; restore then takes the one
before it, and says which it refused and why.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import secrets
from collections.abc import Callable
from datetime import date, datetime, timezone

from resources.gpg import decrypt_argv, require_secret_key
from resources.mariadb import MariaDB, _literal, _quote
from resources.object_store import Store
from resources.restic import Repository
from resources.ssh import Runner, run
from wpfarm_assets.backups.backup import ForgedArchive, TarCounter
from wpfarm_assets.backups.identity import foreign_target
from wpfarm_assets.backups.pipeline import restore_stream
from wpfarm_assets.backups.verify import listed_snapshots, read_manifest, record_refusal, verify_backup
from wpfarm_assets.core.config import RESTORE_DATABASE_PREFIX, Site, validate_absolute_path, validate_identifier
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import (
    BackupKey,
    parse_manifest_key,
    parse_stamp,
    site_prefix,
    split_future,
)
from wpfarm_assets.core.manifest import Manifest, ManifestError

STAGING_PREFIX = ".wpfarm-restore-"  # + 8 hex digits: a restore's staging folder inside its target


class RestoreError(WpfarmError):
    """Nothing suitable to restore, or the restore failed; the message says which and why."""


def list_backups(store: Store, site: str, kind: str, checkpoints: bool = True) -> list[BackupKey]:
    """Every complete backup (one with a manifest) of a site and kind, oldest first; without
    `checkpoints`, those taken before a restore left out."""
    listed = {obj.key for obj in store.list(site_prefix(site, kind))}
    keys = (parse_manifest_key(key) for key in listed)
    return sorted(k for k in keys if k is not None and k.site == site and k.kind == kind
                  and (checkpoints or k.checkpoint_key not in listed))


def nearest_backup(store: Store, site: str, kind: str, when: datetime) -> BackupKey:
    """The backup of `kind` (not a checkpoint) stamped nearest to `when`: a night's dump and
    snapshot are stamped seconds apart, so this is the other half of the night `when` names."""
    backups = list_backups(store, site, kind, checkpoints=False)
    if not backups:
        raise RestoreError(f"site {site}: no {kind} backup in {store.url}")
    return min(backups, key=lambda k: abs((k.time - when).total_seconds()))


def choose_backup(store: Store, site: str, kind: str, gnupg_home: str | None, on: date | None = None,
                  at: str | None = None, repository: Repository | None = None) -> tuple[BackupKey, Manifest, list[str]]:
    """The newest backup (of day `on`, or exactly the one stamped `at`) that verifies: an object is
    the one its manifest describes (read whole, sha256); a snapshot is in the site's repository
    (and restic checks every blob it restores). Those that do not verify are passed over, recorded as
    refused, and named in the third value. Backups stamped in the future are never taken as the
    newest (a named day or stamp is taken as named); an explicit `at` is not replaced by another one.
    A dump flagged as holding another site's database (identity.py), and a checkpoint (taken before a
    restore overwrote the site), are passed over unless named by `at`."""
    backups = list_backups(store, site, kind)
    if at is not None:
        backups = [k for k in backups if k.time == parse_stamp(at)]
    elif on is not None:  # a day the operator names is taken as named
        backups = [k for k in backups if k.time.date() == on]
    else:
        backups, _ = split_future(backups, datetime.now(timezone.utc))
    marked = {o.key for o in store.list(site_prefix(site, kind)) if o.key.endswith((".identity", ".checkpoint"))}
    if at is None:  # a checkpoint is the state before a restore: taken only by its stamp (the undo)
        backups = [k for k in backups if k.checkpoint_key not in marked]
    if not backups:
        when = f" stamped {at}" if at else f" from {on.isoformat()}" if on else ""
        raise RestoreError(f"site {site}: no {kind} backup{when} in {store.url}")
    refused = []
    snapshots = listed_snapshots(store, site) if kind == "files" else None
    for key in reversed(backups):
        if at is None and key.identity_key in marked:  # another site's database was dumped under this site's name
            reason = store.get_bytes(key.identity_key).decode(errors="replace")
            refused.append(f"{key.stamp}: {reason}: another site's dump, passed over (--at takes it all the same)")
            continue
        try:
            manifest = read_manifest(store, key)
        except ManifestError as exc:
            manifest, problem = None, str(exc)
        else:
            if manifest.is_snapshot and repository is None:
                raise RestoreError(f"site {site}: {key.manifest_key} is a snapshot, and no repository was given")
            if not manifest.is_snapshot:
                require_secret_key(manifest.key_fingerprint, gnupg_home)  # not the backup's fault: stop here
            _, problem = verify_backup(store, key, manifest, snapshots=snapshots)  # a store that cannot be read raises
        if problem is None:
            return key, manifest, refused
        record_refusal(store, key, problem)
        refused.append(f"{key.stamp}: {problem}")
        if at is not None:
            break
    raise RestoreError(f"site {site}: no {kind} backup verifies; refused: " + "; ".join(refused)
                       + "; refusing to restore")


def restore_database(site: Site, store: Store, db: MariaDB, gnupg_home: str | None,
                     to_database: str | None = None, on: date | None = None, at: str | None = None,
                     force: bool = False, touching: Callable[[], None] | None = None,
                     tables: list[str] | None = None) -> dict:
    """Load the chosen dump into `to_database` (default: the site's own database, in place). Returns
    what was restored, from which backup (and its manifest), and the backups refused on the way.
    A target that holds another WordPress site (its address) is refused unless `force`.
    `touching` is called once everything is checked, just before the target is first written.
    With `tables`, only those are replaced (each named table of the dump, all in one RENAME TABLE),
    every other table of the target untouched; a name the dump does not have is refused first."""
    target = validate_identifier(to_database or site.database)
    key, manifest, refused = choose_backup(store, site.name, "db", gnupg_home, on, at)
    known = sorted({*(manifest.site_addresses or [a for a in (manifest.siteurl, manifest.home) if a]),
                    *site.addresses}) or None
    if not force and (problem := foreign_target(db, target, site.name, known)):
        raise RestoreError(f"site {site.name}: {problem}: restoring there overwrites another site; refused "
                           "(--force to do it anyway)")
    if tables is not None and (missing := sorted(set(tables) - set(manifest.tables or {}))):
        raise RestoreError(f"site {site.name}: backup {key.stamp} has no table {', '.join(missing)}; it has: "
                           + ", ".join(sorted(manifest.tables or {})))
    if touching:
        touching()
    # A server that writes binary logs replays them for point-in-time recovery, filtered by the
    # site's database: a load into a scratch database and a RENAME across databases would not replay
    # (the restore would be lost to every later --time). There the dump is loaded in place, as before.
    in_place = (tables is not None or (target == site.database and db.database_exists(target))) and not logged(db)
    if tables is not None and not in_place:
        raise RestoreError("--table needs a scratch database and RENAME TABLE, which a server that writes binary "
                           "logs would not replay: restore the whole database, or --to-database another")
    load_into = scratch_database(site.name) if in_place else target
    if in_place:
        drop_scratch(db, site.name)  # a killed restore's
    db.create_database(load_into)
    try:
        source = manifest.database or site.database
        client = db.load(load_into) if load_into == source else Retargeted(db.load(load_into), source, load_into)
        plaintext = restore_stream(store, key.data_key, manifest.sha256, decrypt_argv(gnupg_home), client,
                                   stall_timeout=db.stall_timeout)
        if tables is not None:
            db.create_database(target)
        swapped = in_place and swap_in(db, load_into, target, tables)
        if tables is not None and not swapped:
            raise RestoreError(f"triggers are defined on {', '.join(tables)}: RENAME TABLE cannot swap them in; "
                               "restore the whole database instead")
        if in_place and not swapped:  # views, triggers, routines or events: loaded over the live database
            db.drop_database(load_into)
            restore_stream(store, key.data_key, manifest.sha256, decrypt_argv(gnupg_home), db.load(target),
                           stall_timeout=db.stall_timeout)
    except Exception as exc:
        raise RestoreError(f"site {site.name}: restoring {key.data_key} into {target} failed: {exc}") from exc
    finally:
        if in_place:
            try:
                drop_scratch(db, site.name)
            except WpfarmError:  # never hides the restore's own outcome; the next restore drops it
                pass
    return {"backup": key.data_key, "database": target, "plaintext_bytes": plaintext, "backup_time": key.time,
            "refused": refused, "manifest": manifest, "swapped": bool(in_place and swapped),
            **({"tables": sorted(tables)} if tables is not None else {})}


_DEFINER = re.compile(rb"DEFINER\s*=\s*(`(?:[^`]|``)*`|'[^']*'|[\w.%$-]+)@(`(?:[^`]|``)*`|'[^']*'|[\w.%$-]+)\s*")


_ROWS = re.compile(rb"^INSERT INTO `(?:[^`]|``)+` (?:\([^)]*\) )?VALUES")  # mariadb-dump's row statements
_LITERAL = re.compile(rb"('(?:[^'\\]|\\.|'')*')")


class Retargeted:
    """The `mariadb` client a dump is loaded by, with the dump's views, triggers, routines and events
    made to work in another database: outside the rows and string literals, the source database's
    name before a dot (`` `wp_shop`.`wp_posts` ``, which mariadb-dump writes into a view whose
    definer was missing, or `wp_shop.wp_audit` in a trigger's body) becomes the target's, so a copy
    never writes into the site it came from; every `DEFINER=user@host` is dropped (the object is the
    restoring account's: the site's own account, kept, would have no rights on the new database, and
    one that no longer exists breaks every write a trigger watches, error 1449), and views and
    routines run `SQL SECURITY INVOKER`, with the rights of whoever uses them. Triggers and events
    have no invoker: they run as the restoring account. Rows are never touched: a row statement
    (`INSERT INTO `t` VALUES`, outside a routine's `DELIMITER ;;` block) passes whole to the line
    that ends it (mariadb-dump writes a row per line, line breaks escaped)."""

    def __init__(self, sink, source: str, target: str):
        self._sink, self._pending, self._in_rows, self._in_routine = sink, b"", False, False
        self._source = re.compile(rb"(`" + re.escape(source.replace("`", "``").encode()) + rb"`|(?<![0-9A-Za-z_$`])"
                                  + re.escape(source.encode()) + rb"(?![0-9A-Za-z_$]))(?=\s*\.)")
        self._to = b"`" + target.replace("`", "``").encode() + b"`"

    def _code(self, text: bytes) -> bytes:
        text = _DEFINER.sub(b"", text).replace(b"SQL SECURITY DEFINER", b"SQL SECURITY INVOKER")
        return self._source.sub(self._to, text)

    def _line(self, line: bytes) -> bytes:
        if self._in_rows or (not self._in_routine and _ROWS.match(line)):
            self._in_rows = not line.rstrip().endswith(b";")
            return line
        if line.startswith(b"DELIMITER "):
            self._in_routine = line.strip() != b"DELIMITER ;"
        parts = _LITERAL.split(line)  # string literals (odd parts) stay as they are
        return b"".join(part if i % 2 else self._code(part) for i, part in enumerate(parts))

    def write(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        if lines:
            self._sink.write(b"\n".join(map(self._line, lines)) + b"\n")

    def close_stdin(self) -> None:
        try:
            if self._pending:
                self._sink.write(self._line(self._pending))
        except OSError:
            pass  # the client died: its exit status says why
        self._pending = b""
        self._sink.close_stdin()

    def __getattr__(self, name: str):  # kill, wait, stderr_tail: the client's
        return getattr(self._sink, name)


def logged(db: MariaDB) -> bool:
    """Whether the server writes binary logs."""
    return db.query("SELECT @@log_bin")[0][0] == "1"


def scratch_database(site: str) -> str:
    """A scratch database for an in-place restore of `site`: the reserved prefix, a tag of the site
    (the next restore of it drops a killed one's), a random part."""
    return f"{RESTORE_DATABASE_PREFIX}{hashlib.sha256(site.encode()).hexdigest()[:10]}_{secrets.token_hex(4)}"


def drop_scratch(db: MariaDB, site: str) -> None:
    """Drop every scratch database of in-place restores of `site` (only names of that shape)."""
    pattern = (RESTORE_DATABASE_PREFIX + hashlib.sha256(site.encode()).hexdigest()[:10] + "_").replace("_", "\\_")
    for (name,) in db.query(f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{pattern}%'"):
        db.drop_database(name)


def swap_in(db: MariaDB, scratch: str, target: str, tables: list[str] | None = None) -> bool:
    """Put the tables loaded into `scratch` (only `tables`, when given) in place of `target`'s, in
    one RENAME TABLE (atomic: a kill leaves the old site or the new one, never a half-loaded
    table); `target`'s tables of those names go to a scratch database of their own, dropped by the
    caller; its other tables stay.
    False, changing nothing, when triggers are on the tables moved (RENAME TABLE cannot move those
    across databases) or, for the whole database, the dump has views, routines or events: the
    caller loads it over the live database instead."""
    def count(view: str, schema_column: str, database: str, extra: str = "") -> str:
        return f"(SELECT COUNT(*) FROM information_schema.{view} WHERE {schema_column} = {_literal(database)}{extra})"
    on = "" if tables is None else " AND EVENT_OBJECT_TABLE IN (" + ", ".join(_literal(t) for t in tables) + ")"
    checks = [count("TRIGGERS", "TRIGGER_SCHEMA", d, on) for d in (scratch, target)]
    if tables is None:
        checks += [count(v, c, scratch) for v, c in (("VIEWS", "TABLE_SCHEMA"), ("ROUTINES", "ROUTINE_SCHEMA"),
                                                     ("EVENTS", "EVENT_SCHEMA"))]
    if db.query("SELECT " + " + ".join(checks))[0][0] != "0":
        return False
    old = f"{scratch}_old"
    db.create_database(old)
    incoming = db.tables(scratch) if tables is None else tables
    # Only the tables the dump has are replaced: one the site made since stays, as when a dump is
    # loaded over the live database (its DROP TABLE IF EXISTS names only its own).
    outgoing = [t for t in db.tables(target) if t in incoming]
    moves = [f"{_quote(target)}.{_quote(t)} TO {_quote(old)}.{_quote(t)}" for t in outgoing]
    moves += [f"{_quote(scratch)}.{_quote(t)} TO {_quote(target)}.{_quote(t)}" for t in incoming]
    if moves:  # a site's queries queue behind the RENAME's locks: it waits for theirs a bounded time
        db.query(f"SET SESSION lock_wait_timeout = {max(1, int(db.stall_timeout))}; RENAME TABLE " + ", ".join(moves))
    return True


def restore_files(site: Site, store: Store, runner: Runner, gnupg_home: str | None,
                  to_path: str | None = None, on: date | None = None, at: str | None = None,
                  repository: Repository | None = None, path: str | None = None,
                  touching: Callable[[], None] | None = None) -> dict:
    """Restore the chosen backup's `wp-content` (and `wp-config.php`), or only `path` of it (relative
    to the site root, e.g. `wp-content/uploads/2026`), under `to_path` (default: the site root, in place).

    It is extracted into a staging folder inside the target first, as the owner of the target: a
    snapshot by `restic restore`, then checked (`staged_problem`); an archive by tar
    (--no-same-owner, --no-same-permissions), every member checked before tar sees it
    (TarCounter's guard). Either way no device node, FIFO, set-id file or link out of the folder is
    restored. Only a complete, clean extraction is copied in (`_copy_in`); a failed or refused one
    leaves the target as it was. `touching` is called just before that copy starts.
    Staging folders that a killed restore left in the target are removed first.
    """
    target = validate_absolute_path(to_path) if to_path else posixpath.dirname(site.content_path)
    content = posixpath.basename(site.content_path)  # as the backup holds it
    if path is not None:
        path = validate_member_path(path, content)
    key, manifest, refused = choose_backup(store, site.name, "files", gnupg_home, on, at, repository)
    staging = posixpath.join(target, f"{STAGING_PREFIX}{secrets.token_hex(4)}")
    if runner.exists(target):  # a killed restore's staging folders: only names of this shape
        run(runner, ["find", target, "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-name",
                     STAGING_PREFIX + "[0-9a-f]" * 8, "-exec", "rm", "-rf", "--", "{}", "+"])
    try:
        run(runner, ["mkdir", "-p", "--", target])
        run(runner, ["mkdir", "-m", "0700", "--", staging])
        try:
            if path:
                _refuse_links_on_the_way(runner, target, content, path)
            if manifest.is_snapshot:
                repository.restore(manifest.snapshot_id, staging, path, probe=_writes(runner, staging))
                if problem := staged_problem(runner, staging):
                    raise ForgedArchive(problem)
                plaintext = sum(map(int, run(runner, ["find", staging, "-type", "f", "-printf", "%s\\n"]).split()))
            else:
                guard = TarCounter(guard=True)
                tar = runner.start(["tar", "--extract", "--file=-", f"--directory={staging}", "--no-same-owner",
                                    "--no-same-permissions", "--", *([path] if path else [])], stdin=True)
                plaintext = restore_stream(store, key.data_key, manifest.sha256, decrypt_argv(gnupg_home), tar,
                                           tap=guard.feed)
            wanted = [path] if path else [content, "wp-config.php"]
            members = [m for m in wanted if runner.exists(posixpath.join(staging, m))]
            if (path or content) not in members:
                raise RestoreError(f"the backup holds no {path or content} folder")
            owner = site.content_path if not to_path and runner.exists(site.content_path) else target
            for member in members:
                run(runner, ["chown", "-R", f"--reference={owner}", "--", posixpath.join(staging, member)])
            if path:  # again: the site's users may have made one while the restore ran
                _refuse_links_on_the_way(runner, target, content, path)
            if touching:
                touching()
            _copy_in(runner, staging, target, members)
        finally:
            run(runner, ["rm", "-rf", "--", staging])
    except Exception as exc:
        raise RestoreError(f"site {site.name}: restoring {manifest.artifact} into {target} failed: {exc}") from exc
    return {"backup": manifest.artifact, "path": target, "plaintext_bytes": plaintext, "backup_time": key.time,
            "refused": refused, "manifest": manifest}


def _writes(runner: Runner, staging: str):
    """A probe for a silent `restic restore` (Watchdog): how many times a file in the staging folder
    was written since the probe before. restic preallocates each file at its full size, so sizes
    say nothing; modification times do."""
    marker = posixpath.join(staging, ".wpfarm-probe")
    run(runner, ["touch", "--", marker])
    seen = [0]

    def probe() -> int:
        newer = run(runner, ["find", staging, "-type", "f", "-newer", marker, "-print", "-quit"]).strip()
        run(runner, ["touch", "--", marker])
        seen[0] += bool(newer)
        return seen[0]

    return probe


def _refuse_links_on_the_way(runner: Runner, target: str, content: str, path: str) -> None:
    """A part restored with --path is copied to target/path: no symbolic link (the site's own users
    can make them) may lie between the content folder and it, or the copy would land elsewhere."""
    base = content if path.split("/")[0] == content else ""
    real = run(runner, ["realpath", "-m", "--", posixpath.join(target, path)]).strip()
    expected = posixpath.join(run(runner, ["realpath", "-m", "--", posixpath.join(target, base)]).strip(),
                              posixpath.relpath(path, base or "."))
    if real != posixpath.normpath(expected):
        raise RestoreError(f"{posixpath.join(target, path)} leads through a symbolic link (to {real}); "
                           "refusing to restore --path through it")


def validate_member_path(path: str, content: str) -> str:
    """A part of a files backup, relative to the site root: inside its content folder, or wp-config.php."""
    clean = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    if not clean or clean.startswith("../") or clean == ".." or "\0" in clean:
        raise RestoreError(f"--path {path!r} is not a path inside the backup")
    if clean != "wp-config.php" and clean.split("/")[0] != content:
        raise RestoreError(f"--path {path!r}: a files backup holds {content}/ and wp-config.php only")
    return clean


def staged_problem(runner: Runner, staging: str) -> str | None:
    """What no site's files can hold, in a restored tree: device nodes, FIFOs, sockets, set-id files
    (a set-gid folder is a shared group's, and fine), links out of the folder. None: nothing."""
    odd = run(runner, ["find", staging, "(", "-type", "b", "-o", "-type", "c", "-o", "-type", "p", "-o", "-type", "s",
                       "-o", "!", "-type", "d", "-perm", "/6000", ")", "-printf", "%y %m %P\\n", "-quit"]).strip()
    if odd:
        kind, mode, name = odd.split(" ", 2)
        what = {"b": "a block device", "c": "a character device", "p": "a FIFO", "s": "a socket"}.get(kind)
        return f"the backup holds {what or f'a set-user/group-id file (mode {mode})'} ({name!r})"
    # Each link resolved as the file system would, chains of links included (`b -> a/..`, `a -> ..`).
    pairs = run(runner, ["find", staging, "-type", "l", "-print0", "-exec", "realpath", "-m", "-z", "--", "{}", ";"])
    entries = pairs.split("\0")
    base = run(runner, ["realpath", "--", staging]).strip()
    for link, where in zip(entries[0::2], entries[1::2], strict=False):
        if where != base and not where.startswith(base + "/"):
            return f"the backup holds a link out of its folder ({posixpath.relpath(link, staging)!r} -> {where!r})"
    return None


def _copy_in(runner: Runner, staging: str, target: str, members: list[str]) -> None:
    """Copy the checked extraction over the live folders, in place: the live wp-content stays the
    same directory (the site's containers bind-mount it; it may be a mount point of its own), and
    files the backup does not hold are left where they are. Runs of zeros become holes
    (--sparse=always): restic 0.14 restores a sparse file's holes as zeros, in the staging folder only."""
    for member in members:
        source = posixpath.join(staging, member)
        live = posixpath.join(target, member)
        run(runner, ["mkdir", "-p", "--", posixpath.dirname(live)])
        if runner.exists(source + "/."):  # a folder: merged into the live one
            run(runner, ["mkdir", "-p", "--", live])
            source, live = source + "/.", live + "/"
        run(runner, ["cp", "-a", "--sparse=always", "--remove-destination", "--", source, live])
