"""Object keys: one layout, `sites/<site>/<kind>/<UTC timestamp>.<ext>`, with a `.json` manifest beside.

A backup exists only if its manifest does; the data object alone is an aborted upload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from wpfarm_assets.core.config import validate_site_name

KINDS = {"db": ".sql.zst.gpg", "files": ".tar.zst.gpg"}
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_MANIFEST = re.compile(r"^sites/(?P<site>[^/]+)/(?P<kind>db|files)/(?P<stamp>\d{8}T\d{6}Z)\.json$")


@dataclass(frozen=True, order=True)
class BackupKey:
    site: str
    kind: str
    time: datetime

    def __post_init__(self) -> None:
        validate_site_name(self.site)
        if self.kind not in KINDS:
            raise ValueError(f"unknown backup kind {self.kind!r}")
        if self.time.tzinfo is None:
            raise ValueError("backup times must be timezone-aware UTC")

    @property
    def stamp(self) -> str:
        return self.time.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)

    @property
    def data_key(self) -> str:
        return f"{site_prefix(self.site, self.kind)}{self.stamp}{KINDS[self.kind]}"

    @property
    def manifest_key(self) -> str:
        return f"{site_prefix(self.site, self.kind)}{self.stamp}.json"


def site_prefix(site: str, kind: str) -> str:
    validate_site_name(site)
    return f"sites/{site}/{kind}/"


def site_of(key: str) -> str | None:
    """The site an object key belongs to (`sites/<site>/…`), or None."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "sites" else None


def parse_manifest_key(key: str) -> BackupKey | None:
    """The backup a manifest key names, or None for any other object."""
    match = _MANIFEST.match(key)
    if not match:
        return None
    time = datetime.strptime(match["stamp"], TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    return BackupKey(match["site"], match["kind"], time)
