"""Independent checks that a restore equals its source: a digest of a file tree as a backup sees it."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path

from wpfarm_assets.backups.backup import FILE_EXCLUDES


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
