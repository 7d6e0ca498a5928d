"""Object keys: one layout, `sites/<site>/<kind>/<UTC timestamp>.<ext>`, with a `.json` manifest beside,
`sites/<site>/restic/`, the site's file store (a restic repository: its files backups' data; their
manifests are under `files/` like every manifest), `sites/<site>/drills/<stamp>.json`, the record of
each restore drill, `sites/<site>/site.json`, the record of when a site joined (and what it was), and
`sites/<site>/retired.json`, of when it left the farm configuration. This module is the only place that
spells the layout; everything else asks it.

A backup exists only if its manifest does; the data object alone is an aborted upload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from wpfarm_assets.core.config import validate_site_name

KINDS = {"db": ".sql.zst.gpg", "files": ".tar.zst.gpg"}
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# A backup stamped later than now plus this is not believed (a worker's clock ahead, or a planted
# object): it is flagged and never taken as a site's newest backup.
FUTURE_TOLERANCE = timedelta(minutes=10)
SITES = "sites/"  # every site's objects live under this prefix of the target
SITE_RECORD = "site.json"  # written when a site joins the inventory
RETIRED_RECORD = "retired.json"  # written when it leaves (removed when it comes back)
REPOSITORY = "restic"  # the site's restic repository: the data of its files backups
DRILLS = "drills"  # the site's restore drill records
_MANIFEST = re.compile(r"^sites/(?P<site>[^/]+)/(?P<kind>db|files)/(?P<stamp>\d{8}T\d{6}Z)\.json$")
_DRILL = re.compile(r"^sites/(?P<site>[^/]+)/drills/(?P<stamp>\d{8}T\d{6}Z)\.json$")
_REFUSAL = re.compile(r"^sites/(?P<site>[^/]+)/(?P<kind>db|files)/(?P<stamp>\d{8}T\d{6}Z)\.refused$")


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

    @property
    def refusal_key(self) -> str:
        """Written when a restore or check found this backup not to be what its manifest says: from
        then on it is not counted as a good backup (status, alerts, restore's choice, retention)."""
        return f"{site_prefix(self.site, self.kind)}{self.stamp}.refused"

    @property
    def checkpoint_key(self) -> str:
        """Written beside a backup taken just before a restore overwrote the live site: the state it
        undoes to. Kept CHECKPOINT_DAYS outside the tiers; never taken as the newest backup."""
        return f"{site_prefix(self.site, self.kind)}{self.stamp}.checkpoint"

    @property
    def identity_key(self) -> str:
        """Written beside a dump whose database held another site's address (backups/identity.py):
        the reason, which status and the age check show while it is the site's newest dump."""
        return f"{site_prefix(self.site, self.kind)}{self.stamp}.identity"


def site_root(site: str) -> str:
    """Everything of one site: `sites/<site>/`."""
    validate_site_name(site)
    return f"{SITES}{site}/"


def site_prefix(site: str, kind: str) -> str:
    return f"{site_root(site)}{kind}/"


def repository_prefix(site: str) -> str:
    return f"{site_root(site)}{REPOSITORY}/"


def drill_key(site: str, time: datetime) -> str:
    return f"{site_root(site)}{DRILLS}/{time.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)}.json"


def parse_drill_key(key: str) -> tuple[str, datetime] | None:
    """(site, time) of a restore drill record, or None for any other object."""
    match = _DRILL.match(key)
    return (match["site"], parse_stamp(match["stamp"])) if match else None


def snapshot_ids(keys: Iterable[str], site: str) -> set[str]:
    """The ids of the snapshots in a site's repository, from a listing of the site's objects (restic
    keeps each snapshot as `<repository>/snapshots/<id>`): no restic call, no key derivation."""
    prefix = f"{repository_prefix(site)}snapshots/"
    return {key[len(prefix):] for key in keys if key.startswith(prefix) and "/" not in key[len(prefix):]}


def stored_kind(key: str) -> str | None:
    """The backup kind whose data an object key holds: a kind's own objects, or "files" for the
    site's restic repository; None for anything else."""
    parts = key.split("/", 3)
    return "files" if len(parts) == 4 and site_of(key) and parts[2] == REPOSITORY else kind_of(key)


def site_record_key(site: str) -> str:
    return f"{site_root(site)}{SITE_RECORD}"


def restoring_key(site: str, kind: str) -> str:
    """Written just before a restore starts to overwrite the live site's database or files, deleted
    when it completes: while it is there, the site may be half-restored (a killed restore)."""
    if kind not in KINDS:
        raise ValueError(f"unknown backup kind {kind!r}")
    return f"{site_root(site)}restoring-{kind}.json"


def retired_record_key(site: str) -> str:
    return f"{site_root(site)}{RETIRED_RECORD}"


def site_of(key: str) -> str | None:
    """The site an object key belongs to (`sites/<site>/…`), or None."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) == 3 and f"{parts[0]}/" == SITES else None


def kind_of(key: str) -> str | None:
    """The backup kind an object key belongs to (`sites/<site>/<kind>/…`), or None."""
    parts = key.split("/", 3)
    return parts[2] if len(parts) == 4 and site_of(key) and parts[2] in KINDS else None


def parse_stamp(stamp: str) -> datetime:
    """A backup's UTC stamp (yyyymmddThhmmssZ), as `wpfarm restore --at` takes it."""
    return datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)


def parse_refusal_key(key: str) -> BackupKey | None:
    """The backup a refusal record names, or None for any other object."""
    return _parse(_REFUSAL, key)


def parse_manifest_key(key: str) -> BackupKey | None:
    """The backup a manifest key names, or None for any other object."""
    return _parse(_MANIFEST, key)


def _parse(pattern: re.Pattern, key: str) -> BackupKey | None:
    match = pattern.match(key)
    if not match:
        return None
    time = datetime.strptime(match["stamp"], TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    return BackupKey(match["site"], match["kind"], time)


def split_future(keys: Iterable[BackupKey], now: datetime) -> tuple[list[BackupKey], list[BackupKey]]:
    """(the backups stamped no later than now + FUTURE_TOLERANCE, those stamped after), each oldest first."""
    ordered = sorted(keys)
    limit = now + FUTURE_TOLERANCE
    return [k for k in ordered if k.time <= limit], [k for k in ordered if k.time > limit]


# Staging clones (backups/clone.py): `clones/<name>.json`, which site each is of and where it is.
CLONES = "clones/"


def clone_record_key(name: str) -> str:
    return f"{CLONES}{validate_site_name(name)}.json"


# The farm's binary-log archive (point-in-time recovery): farm-wide, not per site, since one binary
# log holds every site's writes. `binlogs/<archive stamp>-<nn>.binlog.zst.gpg` with its `.json`
# manifest beside (written last), in the order they were archived; `binlogs/gaps/<stamp>.json`
# records a GTID range that no node still had when it was due.
BINLOGS = "binlogs/"
BINLOG_GAPS = f"{BINLOGS}gaps/"
BINLOG_SUFFIX = ".binlog.zst.gpg"
_BINLOG_MANIFEST = re.compile(r"^binlogs/(?P<stamp>\d{8}T\d{6}Z)-(?P<n>\d{4})\.json$")


def binlog_stem(archived: datetime, n: int) -> str:
    return f"{BINLOGS}{archived.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)}-{n:04d}"


def binlog_manifest_keys(keys: Iterable[str]) -> list[str]:
    """The binary-log manifests among `keys`, in the order they were archived."""
    return sorted(k for k in keys if _BINLOG_MANIFEST.match(k))


def binlog_gap_key(found: datetime) -> str:
    return f"{BINLOG_GAPS}{found.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)}.json"
