"""The off-site copy: every backup object of the primary target, copied byte for byte to a second S3
bucket that has S3 Object Lock (resources/object_store.py writes each object there with a COMPLIANCE
retention of `backup.offsite.lock_days`).

What is copied, per site (`sites/<site>/`): dumps and their manifests, the site's restic repository
(its files, not a `restic copy`: restic reads one set of S3 keys, and the copy's keys must never meet
the primary's; the files are content-addressed, so only new ones travel), refusal and identity flags,
drill and site records. Farm-wide: the binary-log archive (`binlogs/`). Never: an interrupted-restore
record (state of the live site, not a backup) or a restic lock.

Every object is checked while it streams: a dump or binary log against its manifest's sha256, a
restic file against its name (restic names every file but `config` by the SHA-256 of its content);
a mismatch aborts that upload. Data goes first, restic snapshots and manifests last, so the copy's
listing never names a backup whose data is not there yet. The copy reads the primary target only.

Deletions follow the primary's retention and restic prune (a deleted object on the copy is a delete
marker; the locked version stays until its lock ends), except when they would remove the newest
backup of a kind the copy holds: retention never does that, a wiped primary does. Then nothing is
deleted and the report says why.

`as_of(T)` (AsOfStore) is the copy as it was at T; `recover` writes it back to a target.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from resources.object_store import S3Store, Store
from wpfarm_assets.backups.health import CRITICAL, NEW, OK, WARNING, Finding, SiteBackups, group_listing
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import BINLOGS, KINDS, REPOSITORY, SITES, parse_manifest_key, repository_prefix, site_root

_CONTENT_ADDRESSED = re.compile(r"/(data/[0-9a-f]{2}|index|snapshots|keys)/(?P<id>[0-9a-f]{64})$")
_NOT_COPIED = re.compile(rf"^sites/[^/]+/(restoring-[a-z]+\.json|{REPOSITORY}/locks/.*)$")


class OffsiteError(WpfarmError):
    """The off-site copy failed or is not safe; the message says which and why."""


@dataclass
class CopyReport:
    prefix: str
    copied: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    deleted: list[str] = field(default_factory=list)
    not_deleted: str | None = None  # why deletions were not followed
    missing: list[str] = field(default_factory=list)  # backups (manifest keys) on the primary not on the copy

    @property
    def backups_copied(self) -> int:
        return sum(1 for k in self.copied if is_backup_manifest(k))


def is_backup_manifest(key: str) -> bool:
    return parse_manifest_key(key) is not None or (key.startswith(BINLOGS) and key.endswith(".json")
                                                   and "/gaps/" not in key)


def order(key: str) -> int:
    """Copy order: data first, then restic indexes, restic snapshots, and manifests last."""
    if is_backup_manifest(key):
        return 3
    if f"/{REPOSITORY}/snapshots/" in key:
        return 2
    if f"/{REPOSITORY}/index/" in key:
        return 1
    return 0


def copyable(key: str) -> bool:
    return not _NOT_COPIED.match(key) and "/.partial-" not in key


def expected_sha256(source: Store, manifests: Iterable[str]) -> dict[str, str]:
    """For each data object of the backups whose manifests are named: the sha256 it must have."""
    expected = {}
    for key in manifests:
        if is_backup_manifest(key):
            manifest = json.loads(source.get_bytes(key))
            if manifest.get("object_key") and manifest.get("sha256"):
                expected[manifest["object_key"]] = manifest["sha256"]
    return expected


def copy_object(primary: Store, copy: Store, key: str, want: str | None) -> int:
    """Stream one object from the primary to the copy; the upload is committed only if its sha256 is
    `want` (or, for a restic file, its name). Returns the bytes copied."""
    if want is None and (match := _CONTENT_ADDRESSED.search(key)):
        want = match["id"]
    digest, size = hashlib.sha256(), 0

    def chunks():
        nonlocal size
        with primary.open(key) as body:
            while chunk := body.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

    def check() -> None:
        if want is not None and digest.hexdigest() != want:
            raise OffsiteError(f"{key} on the primary has sha256 {digest.hexdigest()[:12]}…, not {want[:12]}… as "
                               "its manifest (or name) says: not copied")

    copy.put_stream(key, chunks(), check)
    return size


def copy_new(source: Store, target: Store, prefix: str) -> tuple[CopyReport, set[str], set[str]]:
    """Copy what `target` lacks under `prefix` (a new key, or one of another size), data first and
    manifests last. Returns the report and the keys of each side before the copy."""
    report = CopyReport(prefix)
    listing = {o.key: o for o in source.list(prefix) if copyable(o.key)}
    there = {o.key: o for o in target.list(prefix)}
    todo = sorted((k for k, o in listing.items() if k not in there or there[k].size != o.size),
                  key=lambda k: (order(k), k))
    expected = expected_sha256(source, [k for k in todo if is_backup_manifest(k)])
    for key in todo:
        report.bytes_copied += copy_object(source, target, key, expected.get(key))
        report.copied.append(key)
    return report, set(listing), set(there)


def copy_prefix(primary: Store, copy: Store, prefix: str) -> CopyReport:
    """Make the copy's `prefix` what the primary's is: new or changed objects copied, deleted ones
    deleted, unless that would remove the newest backup of a kind the copy holds."""
    report, source, there = copy_new(primary, copy, prefix)
    gone = sorted(k for k in there if k not in source and copyable(k))
    if gone:
        if lost := sorted(set(gone) & newest_backups(there)):
            report.not_deleted = (f"{len(gone)} object(s) gone from the primary, among them the newest backup "
                                  f"{lost[0]}: retention never deletes that, so the copy keeps them all")
        else:
            copy.delete(sorted(gone, key=lambda k: -order(k)))  # manifests first: no backup without its data
            report.deleted = gone
    return report


def newest_backups(listing: Iterable[str]) -> set[str]:
    """The manifest key of the newest backup of each (site, kind) in a listing, and of the binary logs."""
    newest: dict[tuple, str] = {}
    for key in listing:
        if (parsed := parse_manifest_key(key)) is not None:
            group = (parsed.site, parsed.kind)
        elif is_backup_manifest(key):
            group = ("binlogs",)
        else:
            continue
        if group not in newest or key > newest[group]:
            newest[group] = key
    return set(newest.values())


def copy_site(primary: Store, copy: Store, site: str) -> CopyReport:
    return copy_prefix(primary, copy, site_root(site))


OFFSITE_ALERT = "WpfarmOffsiteCopy"
LOCK_SAMPLE = 5  # objects of the copy, written within their lock, whose lock is read back each check


def offsite_findings(sites: Iterable[str], primary: dict[str, SiteBackups], copy: dict[str, SiteBackups],
                     now: datetime, warning_hours: float, critical_hours: float) -> list[Finding]:
    """Per site: the copy's lag, the age of the oldest backup on the primary that the copy lacks
    (warning, critical after the backup-age thresholds); ok when it lacks none."""
    findings = []
    for site in sites:
        ours = primary.get(site)
        theirs = copy.get(site)
        missing = sorted(k for kind in KINDS for k in (ours.backups[kind] if ours else [])
                         if not theirs or k not in theirs.backups[kind])
        copied = [k for kind in KINDS for k in (theirs.backups[kind] if theirs else [])]
        newest = max((k.time for k in copied), default=None)
        age = round((now - newest).total_seconds() / 3600, 2) if newest else None
        if not missing:
            state, reason = (OK, f"copied up to {newest:%Y-%m-%d %H:%M} UTC") if copied else (NEW, "nothing to copy yet")
        else:
            lag = (now - missing[0].time).total_seconds() / 3600
            state = CRITICAL if lag >= critical_hours else WARNING if lag >= warning_hours else OK
            reason = (f"{len(missing)} backup(s) not on the copy yet, the oldest {missing[0].kind} {missing[0].stamp} "
                      f"({lag:.1f} h)")
        findings.append(Finding(site, "offsite", state, reason, newest, age))
    return findings


def lock_findings(copy: S3Store, listing: dict[str, SiteBackups], lock_days: int, now: datetime,
                  sample: int = LOCK_SAMPLE) -> list[Finding]:
    """The copy is immutable: its bucket has object lock, and a random sample of the manifests
    written within their lock carry a COMPLIANCE retention that has not ended. Critical if not."""
    if problem := copy.lock_problem():
        return [Finding("farm", "offsite", CRITICAL, f"the off-site copy is not immutable: {problem}")]
    recent = [o.key for entry in listing.values() for key, o in entry.objects.items()
              if parse_manifest_key(key) and now - o.modified < timedelta(days=lock_days)]
    for key in random.sample(recent, min(sample, len(recent))):
        mode, until = copy.lock_of(key)
        if mode != "COMPLIANCE" or until is None or until <= now:
            return [Finding("farm", "offsite", CRITICAL, f"{key} on the off-site copy is not locked (mode {mode}, "
                            f"until {until}): it can be deleted")]
    return [Finding("farm", "offsite", OK, f"{copy.url}: object lock on; {min(sample, len(recent))} recent "
                    "object(s) checked: COMPLIANCE, locked")]


def copy_health(open_copy: Callable[[], S3Store], sites: list[str], listing: dict[str, SiteBackups], now: datetime,
                lock_days: int, warning_hours: float, critical_hours: float) -> list[Finding]:
    """The copy's lock state (one farm finding, first), then each site's lag; a copy that cannot be
    read (keys wrong, endpoint dead) is one critical finding."""
    try:
        copy = open_copy()
        copied = group_listing(list(copy.list(SITES)))
        state = lock_findings(copy, copied, lock_days, now)
    except WpfarmError as exc:
        return [Finding("farm", "offsite", CRITICAL, f"the off-site copy cannot be read: {exc}")]
    return state + offsite_findings(sites, listing, copied, now, warning_hours, critical_hours)


def materialize_repository(store: Store, site: str, into: str | os.PathLike) -> Path:
    """The site's restic repository from `store` (e.g. the copy as of a time) as a local folder that
    restic reads with `-r`: every file written, each restic file checked against its name."""
    root = Path(into)
    prefix = repository_prefix(site)
    for obj in store.list(prefix):
        path = root / obj.key[len(prefix):]
        if not path.resolve().is_relative_to(root.resolve()):
            raise OffsiteError(f"{obj.key} escapes the repository")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with store.open(obj.key) as body, open(path, "wb") as out:
            while chunk := body.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if (match := _CONTENT_ADDRESSED.search(obj.key)) and digest.hexdigest() != match["id"]:
            raise OffsiteError(f"{obj.key} in {store.url} does not match its name: the copy is damaged")
    if not (root / "config").exists():
        raise OffsiteError(f"{store.url} holds no restic repository of {site}")
    return root


def scratch_repository_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="wpfarm-offsite-")


def recover(source: Store, target: Store, sites: Iterable[str] | None = None) -> list[CopyReport]:
    """Write the copy (as of a time: an AsOfStore) back to a target, every site and the binary-log
    archive, manifests last; what the target already holds (same key and size) is left alone, and
    nothing there is deleted."""
    names = sorted(sites) if sites is not None else sorted({k.split("/")[1] for k in keys_under(source, "sites/")})
    return [copy_new(source, target, prefix)[0] for prefix in [*(site_root(n) for n in names), BINLOGS]]


def keys_under(store: Store, prefix: str) -> list[str]:
    return [o.key for o in store.list(prefix) if o.key.count("/") >= 2]


def parse_as_of(text: str) -> datetime:
    """`--as-of`: an ISO 8601 UTC time (2026-12-07T14:32:05Z)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OffsiteError(f"--as-of {text!r}: use an ISO 8601 UTC time, e.g. 2026-12-07T14:32:05Z") from None
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
