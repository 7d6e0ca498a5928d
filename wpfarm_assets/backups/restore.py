"""Restore one site from its newest good backup (or the newest of a given day, or one named by its
stamp): database, files, or both.

The stored object is checked against its manifest's sha256 before anything is written, so a
corrupted or truncated backup is refused instead of half-restored; restore then takes the one
before it, and says which it refused and why.
"""

from __future__ import annotations

import posixpath
import secrets
from datetime import date, datetime, timezone

from resources.gpg import decrypt_argv, require_secret_key
from resources.mariadb import MariaDB
from resources.object_store import Store
from resources.ssh import Runner, run
from wpfarm_assets.backups.backup import TarCounter
from wpfarm_assets.backups.pipeline import restore_stream
from wpfarm_assets.backups.verify import read_manifest, record_refusal, verify_backup
from wpfarm_assets.core.config import Site, validate_absolute_path, validate_identifier
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import BackupKey, parse_manifest_key, parse_stamp, site_prefix, split_future
from wpfarm_assets.core.manifest import Manifest, ManifestError


class RestoreError(WpfarmError):
    """Nothing suitable to restore, or the restore failed; the message says which and why."""


def list_backups(store: Store, site: str, kind: str) -> list[BackupKey]:
    """Every complete backup (one with a manifest) of a site and kind, oldest first."""
    keys = (parse_manifest_key(obj.key) for obj in store.list(site_prefix(site, kind)))
    return sorted(k for k in keys if k is not None and k.site == site and k.kind == kind)


def choose_backup(store: Store, site: str, kind: str, gnupg_home: str | None, on: date | None = None,
                  at: str | None = None) -> tuple[BackupKey, Manifest, list[str]]:
    """The newest backup (of day `on`, or exactly the one stamped `at`) that verifies: its object is
    the one its manifest describes (read whole, sha256). Those that do not are passed over, recorded
    as refused, and named in the third value. Backups stamped in the future are never taken as the
    newest (a named day or stamp is taken as named); an explicit `at` is not replaced by another one."""
    backups = list_backups(store, site, kind)
    if at is not None:
        backups = [k for k in backups if k.time == parse_stamp(at)]
    elif on is not None:  # a day the operator names is taken as named
        backups = [k for k in backups if k.time.date() == on]
    else:
        backups, _ = split_future(backups, datetime.now(timezone.utc))
    if not backups:
        when = f" stamped {at}" if at else f" from {on.isoformat()}" if on else ""
        raise RestoreError(f"site {site}: no {kind} backup{when} in {store.url}")
    refused = []
    for key in reversed(backups):
        try:
            manifest = read_manifest(store, key)
        except ManifestError as exc:
            manifest, problem = None, str(exc)
        else:
            require_secret_key(manifest.key_fingerprint, gnupg_home)  # not the backup's fault: stop here
            _, problem = verify_backup(store, key, manifest)  # a store that cannot be read raises
        if problem is None:
            return key, manifest, refused
        record_refusal(store, key, problem)
        refused.append(f"{key.stamp}: {problem}")
        if at is not None:
            break
    raise RestoreError(f"site {site}: no {kind} backup verifies; refused: " + "; ".join(refused)
                       + "; refusing to restore")


def restore_database(site: Site, store: Store, db: MariaDB, gnupg_home: str | None,
                     to_database: str | None = None, on: date | None = None, at: str | None = None) -> dict:
    """Load the chosen dump into `to_database` (default: the site's own database, in place)."""
    target = validate_identifier(to_database or site.database)
    key, manifest, refused = choose_backup(store, site.name, "db", gnupg_home, on, at)
    db.create_database(target)
    try:
        plaintext = restore_stream(store, key.data_key, manifest.sha256, decrypt_argv(gnupg_home), db.load(target))
    except Exception as exc:
        raise RestoreError(f"site {site.name}: restoring {key.data_key} into {target} failed: {exc}") from exc
    return {"object_key": key.data_key, "database": target, "plaintext_bytes": plaintext, "backup_time": key.time,
            "refused": refused}


def restore_files(site: Site, store: Store, runner: Runner, gnupg_home: str | None,
                  to_path: str | None = None, on: date | None = None, at: str | None = None) -> dict:
    """Restore the chosen archive's `wp-content` (and `wp-config.php`) under `to_path` (default: the
    site root, in place).

    It is extracted into a staging folder inside the target first, as the owner of the target
    (tar's --no-same-owner, --no-same-permissions: no archive owners, no set-id bits), every member
    checked before tar sees it (no device nodes, FIFOs, set-id files, paths or links out of the
    folder: TarCounter's guard). Only a complete, clean extraction is copied in (`_copy_in`); a
    failed or refused extraction leaves the target as it was.
    """
    target = validate_absolute_path(to_path) if to_path else posixpath.dirname(site.content_path)
    key, manifest, refused = choose_backup(store, site.name, "files", gnupg_home, on, at)
    staging = posixpath.join(target, f".wpfarm-restore-{secrets.token_hex(4)}")
    try:
        run(runner, ["mkdir", "-p", "--", target])
        run(runner, ["mkdir", "-m", "0700", "--", staging])
        try:
            guard = TarCounter(guard=True)
            tar = runner.start(["tar", "--extract", "--file=-", f"--directory={staging}", "--no-same-owner",
                                "--no-same-permissions"], stdin=True)
            plaintext = restore_stream(store, key.data_key, manifest.sha256, decrypt_argv(gnupg_home), tar,
                                       tap=guard.feed)
            content = posixpath.basename(site.content_path)  # as tar_argv archived it
            members = [m for m in (content, "wp-config.php") if runner.exists(posixpath.join(staging, m))]
            if content not in members:
                raise RestoreError(f"the archive holds no {content}/ folder")
            owner = site.content_path if not to_path and runner.exists(site.content_path) else target
            for member in members:
                run(runner, ["chown", "-R", f"--reference={owner}", "--", posixpath.join(staging, member)])
            _copy_in(runner, staging, target, members)
        finally:
            run(runner, ["rm", "-rf", "--", staging])
    except Exception as exc:
        raise RestoreError(f"site {site.name}: restoring {key.data_key} into {target} failed: {exc}") from exc
    return {"object_key": key.data_key, "path": target, "plaintext_bytes": plaintext, "backup_time": key.time,
            "refused": refused}


def _copy_in(runner: Runner, staging: str, target: str, members: list[str]) -> None:
    """Copy the checked extraction over the live folders, in place: the live wp-content stays the
    same directory (the site's containers bind-mount it; it may be a mount point of its own), and
    files the backup does not hold are left where they are."""
    for member in members:
        source = posixpath.join(staging, member)
        live = posixpath.join(target, member)
        if member != "wp-config.php":
            run(runner, ["mkdir", "-p", "--", live])
            source, live = source + "/.", live + "/"
        run(runner, ["cp", "-a", "--remove-destination", "--", source, live])
