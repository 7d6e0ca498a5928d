"""Is a backup what its manifest says? (`verify_backup`: the one check that retention, the integrity
check and restore all use.) And independent checks that a restore equals its source: a digest of a
file tree as a backup sees it."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path

from resources.object_store import Store, StoreError
from wpfarm_assets.backups.backup import FILE_EXCLUDES
from wpfarm_assets.backups.pipeline import object_sha256
from wpfarm_assets.core.keys import BackupKey, repository_prefix, snapshot_ids
from wpfarm_assets.core.manifest import Manifest, ManifestError

NOT_LISTED = -1  # `listed_size` when the caller has no listing: the object is read to find out


def listed_snapshots(store: Store, site: str) -> set[str]:
    """The ids of the snapshots in the site's repository, from one listing of its snapshots/ folder."""
    return snapshot_ids((o.key for o in store.list(f"{repository_prefix(site)}snapshots/")), site)


def record_refusal(store: Store, key: BackupKey, reason: str) -> None:
    """Remember that this backup did not verify (status and alerts flag the site until a good backup
    is newer; restore passes it over). Best effort: the caller reports the problem in any case."""
    try:
        store.put_bytes(key.refusal_key, reason.encode())
    except StoreError:
        pass


def read_manifest(store: Store, key: BackupKey) -> Manifest:
    return Manifest.from_bytes(store.get_bytes(key.manifest_key), key.manifest_key)


def verify_backup(store: Store, key: BackupKey, manifest: Manifest | None = None, listed_size: int | None = NOT_LISTED,
                  read: bool = True, snapshots: set[str] | None = None) -> tuple[Manifest | None, str | None]:
    """The backup's manifest, and what is wrong with its stored object or snapshot (None: nothing).

    A snapshot must be in the site's repository: among `snapshots` (ids from a listing the caller
    has: keys.snapshot_ids), else the store is listed. Its data is read by `restic check` (the
    integrity check's rotation) and by every restore (restic checks each blob), not here.

    `listed_size` is the object's size in a listing the caller already has (None: not in it, so
    missing). With `read`, the object is read whole and its size and sha256 compared with the
    manifest; without, only the listed size is (cheap: retention's guard). A database dump must also
    have ended with mariadb-dump's completion marker. A manifest that cannot be parsed is a problem
    of the backup (manifest None); a store that cannot be read raises StoreError: that is not the
    backup's fault, and must not be recorded as if it were.
    """
    if manifest is None:
        try:
            manifest = read_manifest(store, key)
        except ManifestError as exc:
            return None, str(exc)
    if (manifest.site, manifest.kind) != (key.site, key.kind) or (manifest.is_snapshot and key.kind != "files"):
        return manifest, f"{key.manifest_key} describes a {manifest.kind} backup of {manifest.site}, not this one"
    if manifest.is_snapshot:
        if snapshots is None:
            snapshots = listed_snapshots(store, key.site)
        if manifest.snapshot_id not in snapshots:
            return manifest, f"snapshot {manifest.snapshot_id[:8]} of {key.manifest_key} is not in {manifest.repository}"
        return manifest, None
    size = listed_size
    if size is None:
        return manifest, f"{key.data_key} is missing"
    if size != NOT_LISTED and size != manifest.stored_bytes:
        return manifest, f"{key.data_key} is {size} bytes, its manifest says {manifest.stored_bytes}"
    if read:
        sha256, size = object_sha256(store, key.data_key)
        if size != manifest.stored_bytes:
            return manifest, f"{key.data_key} is {size} bytes, its manifest says {manifest.stored_bytes}"
        if sha256 != manifest.sha256:
            return manifest, f"{key.data_key} does not match its manifest's sha256 (corrupted)"
    if key.kind == "db" and not manifest.dump_complete:
        return manifest, f"{key.data_key}: the dump did not end with mariadb-dump's completion marker"
    return manifest, None


def excluded(relative: str) -> bool:
    """Whether the archive leaves this path (relative to the site root) out, as tar's --exclude does."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in FILE_EXCLUDES)


def tree_digest(site_root: str | os.PathLike) -> tuple[str, int]:
    """sha256 over (path, mode bits, content) of wp-content and wp-config.php, excludes applied; and the file count."""
    root = Path(site_root)
    entries = []
    for top in ("wp-content", "wp-config.php"):
        start = root / top
        paths = [start] if start.is_file() else sorted(start.rglob("*")) if start.is_dir() else []
        for path in paths:
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not excluded(relative):
                entries.append((relative, path.stat().st_mode & 0o777, hashlib.sha256(path.read_bytes()).hexdigest()))
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(repr(entry).encode())
    return digest.hexdigest(), len(entries)
