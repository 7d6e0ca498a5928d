"""The off-site copy: every backup object of the primary target, copied byte for byte to a second S3
bucket that has S3 Object Lock (resources/object_store.py writes each object there with a COMPLIANCE
retention of `backup.offsite.lock_days`).

What is copied, per site (`sites/<site>/`): dumps and their manifests, the site's restic repository
(its files, not a `restic copy`: restic reads one set of S3 keys, and the copy's keys must never meet
the primary's; the files are content-addressed, so only new ones travel), refusal, identity and
checkpoint flags, drill and site records. Farm-wide: the binary-log archive (`binlogs/`). Never: an
interrupted-restore record (state of the live site, not a backup), a restic lock, or a dump or log
whose manifest is not written yet.

Every object is checked while it streams: a dump or binary log against its manifest's sha256, a
restic file against its name (restic names every file but `config` by the SHA-256 of its content);
a mismatch aborts that upload. A backup object never changes: one whose size differs from the
copy's is not copied again, and the site's copy fails naming it. Data goes first, restic snapshots
and manifests last, so the copy never lists a backup whose data is missing. It reads the primary
target only.

What is gone from the primary is deleted on the copy (a delete marker while the lock holds) only as
far as the copy's own retention says so: a backup the tiers (or a checkpoint's 7 days) expire, on
the copy's own listing, with its objects; restic files only while the primary still holds every
snapshot the copy keeps; binary logs older than database.pitr_days. A wiped or vandalised primary is
therefore not followed.

Locks end `lock_days` after they are set; what the copy still holds is locked again for `lock_days`
every `lock_days / 2` (per prefix, recorded in `<prefix>offsite-lock.json` on the copy), so nothing
it needs is ever unlocked while the copy runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from resources.object_store import S3Store, Store, StoredObject
from resources.restic import Repository, ResticError
from wpfarm_assets.backups.health import (
    CRITICAL,
    NEW,
    OK,
    WARNING,
    Finding,
    SiteBackups,
    check_subset,
    group_listing,
)
from wpfarm_assets.backups.retention import plan_kind
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import (
    BINLOG_SUFFIX,
    BINLOGS,
    KINDS,
    REPOSITORY,
    SITES,
    binlog_manifest_keys,
    parse_manifest_key,
    parse_stamp,
    repository_prefix,
    site_root,
)

_CONTENT_ADDRESSED = re.compile(r"/(data/[0-9a-f]{2}|index|snapshots|keys)/(?P<id>[0-9a-f]{64})$")
_NOT_COPIED = re.compile(rf"(^sites/[^/]+/(restoring-[a-z]+\.json|{REPOSITORY}/locks/.*)|/\.[^/]*\.partial-\d+"
                         r"|(^|/)offsite-lock\.json)$")
DATA_SUFFIXES = (*KINDS.values(), BINLOG_SUFFIX)
MUTABLE = ("site.json", "retired.json")  # records a site rewrites; everything else is written once
LOCK_RECORD = "offsite-lock.json"


class OffsiteError(WpfarmError):
    """The off-site copy failed or is not safe; the message says which and why."""


@dataclass
class CopyReport:
    prefix: str
    copied: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # gone from the primary, kept by the copy's own retention
    changed: list[str] = field(default_factory=list)  # a backup object whose size differs: not copied
    relocked: int = 0  # objects whose lock was set again

    @property
    def backups_copied(self) -> int:
        return sum(1 for k in self.copied if is_backup_manifest(k))


def is_backup_manifest(key: str) -> bool:
    return parse_manifest_key(key) is not None or bool(binlog_manifest_keys([key]))


def manifest_of(key: str) -> str | None:
    """The manifest that describes a dump, older files archive or binary log; None for other objects."""
    suffix = next((s for s in DATA_SUFFIXES if key.endswith(s)), None)
    return f"{key[:-len(suffix)]}.json" if suffix else None


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
    return not _NOT_COPIED.search(key) and not key.endswith("/")


def _chunks(store: Store, key: str, digest) -> Iterator[bytes]:
    """The object's bytes, fed to `digest` as they stream."""
    with store.open(key) as body:
        while chunk := body.read(1 << 20):
            digest.update(chunk)
            yield chunk


def expected_sha256(source: Store, key: str, listing: dict[str, StoredObject]) -> str | None:
    """The sha256 an object must have: a dump's or log's, from its manifest (which must name it); a
    restic file's, from its name. Raises when a dump or log has no manifest yet (not copied yet)."""
    if manifest_key := manifest_of(key):
        if manifest_key not in listing:
            raise LookupError(key)
        manifest = json.loads(source.get_bytes(manifest_key))
        if manifest.get("object_key") != key or not manifest.get("sha256"):
            raise OffsiteError(f"{manifest_key} does not describe {key}: not copied")
        return manifest["sha256"]
    match = _CONTENT_ADDRESSED.search(key)
    return match["id"] if match else None


def copy_object(source: Store, target: Store, key: str, want: str | None) -> int:
    """Stream one object; the upload is committed only if its sha256 is `want`. Returns its bytes."""
    digest = hashlib.sha256()
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for chunk in _chunks(source, key, digest):
            size += len(chunk)
            yield chunk

    def check() -> None:
        if want is not None and digest.hexdigest() != want:
            raise OffsiteError(f"{key} in {source.url} has sha256 {digest.hexdigest()[:12]}…, not {want[:12]}… as its "
                               "manifest (or name) says: not copied")

    target.put_stream(key, counted(), check)
    return size


def copy_new(source: Store, target: Store, prefix: str, replace_changed: bool = False
             ) -> tuple[CopyReport, dict[str, StoredObject], dict[str, StoredObject]]:
    """Copy what `target` lacks under `prefix`, data first and manifests last; a dump or log only
    once its manifest is there. An object of another size on the target is copied again only if
    it is a record sites rewrite, or with `replace_changed`; else it is reported. Returns the report
    and each side's listing before the copy."""
    report = CopyReport(prefix)
    listing = {o.key: o for o in source.list(prefix) if copyable(o.key)}
    there = {o.key: o for o in target.list(prefix)}
    todo = []
    for key, obj in listing.items():
        if key not in there:
            todo.append(key)
        elif there[key].size != obj.size:
            (todo if replace_changed or key.rsplit("/", 1)[-1] in MUTABLE else report.changed).append(key)
    for key in sorted(todo, key=lambda k: (order(k), k)):
        try:
            want = expected_sha256(source, key, listing)
        except LookupError:
            continue  # its manifest is not written yet: a backup still running, or one that never will be
        report.bytes_copied += copy_object(source, target, key, want)
        report.copied.append(key)
    return report, listing, there


def copy_prefix(primary: Store, copy: Store, prefix: str, now: datetime, tiers: tuple[int, int, int],
                pitr_days: int) -> CopyReport:
    """Bring the copy's `prefix` up to the primary's: new objects copied; what is gone from the
    primary deleted only as the copy's own retention allows (`deletable`)."""
    report, listing, there = copy_new(primary, copy, prefix)
    there = {**there, **{k: listing[k] for k in report.copied}}  # what the copy holds now
    gone = {k for k in there if k not in listing and copyable(k)}
    if gone:
        allowed = deletable(copy, prefix, there, listing, now, tiers, pitr_days) & gone
        report.kept = sorted(gone - allowed)
        if allowed:
            copy.delete(sorted(allowed, key=lambda k: -order(k)))  # manifests first: no backup without its data
            report.deleted = sorted(allowed)
    if getattr(copy, "lock_days", None):
        report.relocked = relock(copy, prefix, set(there) - set(report.deleted), now)
    return report


def deletable(copy: Store, prefix: str, there: dict[str, StoredObject], primary: dict[str, StoredObject],
              now: datetime, tiers: tuple[int, int, int], pitr_days: int) -> set[str]:
    """What the copy's own retention lets go under `prefix`, judged on the copy's listing `there`."""
    allowed: set[str] = set()
    if prefix == BINLOGS:
        for manifest in binlog_manifest_keys(there)[:-1]:  # never the newest
            if parse_stamp(manifest[len(BINLOGS):].split("-")[0]) < now - timedelta(days=pitr_days + 1):
                allowed |= {manifest, f"{manifest[:-len('.json')]}{BINLOG_SUFFIX}"}
        return allowed
    kept_snapshots: set[str] = set()
    for kind in KINDS:
        backups = sorted(k for k in map(parse_manifest_key, there) if k and k.kind == kind)
        if not backups:
            continue
        plan = plan_kind(backups, there, now, *tiers)
        for key in backups:
            if key.time not in plan:
                allowed |= {key.manifest_key, key.data_key, key.refusal_key, key.identity_key, key.checkpoint_key}
            elif kind == "files" and key.data_key not in there:
                snapshot = json.loads(copy.get_bytes(key.manifest_key)).get("snapshot_id")
                kept_snapshots.add(snapshot)
    repo = repository_prefix(prefix.split("/")[1])
    if f"{repo}config" in primary and all(f"{repo}snapshots/{s}" in primary for s in kept_snapshots):
        allowed |= {k for k in there if k.startswith(repo)}  # a prune the kept snapshots survived
    return allowed


def relock(copy: S3Store, prefix: str, listing: Iterable[str], now: datetime) -> int:
    """Every `lock_days / 2`, lock again for `lock_days` everything the copy holds under `prefix`
    (a lock set at upload would otherwise end while a monthly dump or a restic pack is still
    needed). Returns how many objects were locked again."""
    record = f"{prefix}{LOCK_RECORD}"
    try:
        last = datetime.fromisoformat(json.loads(copy.get_bytes(record))["locked_at"])
    except (WpfarmError, ValueError, KeyError):
        last = None  # first run, or unreadable: lock everything again now
    if last is not None and now - last < timedelta(days=copy.lock_days / 2):
        return 0
    keys = [k for k in listing if copyable(k)]
    for key in keys:
        copy.lock_again(key)
    copy.put_bytes(record, json.dumps({"locked_at": now.isoformat(), "objects": len(keys)}).encode())
    return len(keys)


def copy_site(primary: Store, copy: S3Store, site: str, now: datetime, tiers: tuple[int, int, int],
              pitr_days: int = 14) -> CopyReport:
    return copy_prefix(primary, copy, site_root(site), now, tiers, pitr_days)


OFFSITE_ALERT = "WpfarmOffsiteCopy"
LOCK_SAMPLE = 5  # objects of the copy whose lock is read back each check


def offsite_findings(sites: Iterable[str], primary: dict[str, SiteBackups], copy: dict[str, SiteBackups],
                     now: datetime, warning_hours: float, critical_hours: float) -> list[Finding]:
    """Per site: the copy's lag, the age of the oldest backup on the primary that the copy lacks
    (warning, critical after the backup-age thresholds); ok when it lacks none; critical when the
    copy holds backups of a site the primary has none of (a wiped primary looks like a new farm)."""
    findings = []
    for site in sites:
        ours = primary.get(site)
        theirs = copy.get(site)
        missing = sorted(k for kind in KINDS for k in (ours.backups[kind] if ours else [])
                         if not theirs or k not in theirs.backups[kind])
        copied = [k for kind in KINDS for k in (theirs.backups[kind] if theirs else [])]
        newest = max((k.time for k in copied), default=None)
        age = round((now - newest).total_seconds() / 3600, 2) if newest else None
        if copied and not any(ours.backups[kind] for kind in KINDS) if ours else copied:
            state, reason = CRITICAL, (f"the primary target holds no backup of the site, the off-site copy holds "
                                       f"{len(copied)}: was the primary wiped? (wpfarm offsite recover)")
        elif not missing:
            state, reason = (OK, f"copied up to {newest:%Y-%m-%d %H:%M} UTC") if copied else (NEW, "nothing to copy yet")
        else:
            lag = (now - missing[0].time).total_seconds() / 3600
            state = CRITICAL if lag >= critical_hours else WARNING if lag >= warning_hours else OK
            reason = (f"{len(missing)} backup(s) not on the copy yet, the oldest {missing[0].kind} {missing[0].stamp} "
                      f"({lag:.1f} h)")
        findings.append(Finding(site, "offsite", state, reason, newest, age))
    return findings


def lock_findings(copy: S3Store, listing: dict[str, SiteBackups], now: datetime,
                  sample: int = LOCK_SAMPLE) -> list[Finding]:
    """The copy is immutable: its bucket has object lock, and a random sample of the objects it
    holds (any age: they are locked again while held) carry a COMPLIANCE retention that has not
    ended. Critical if not."""
    if problem := copy.lock_problem():
        return [Finding("farm", "offsite", CRITICAL, f"the off-site copy is not immutable: {problem}")]
    held = [key for entry in listing.values() for key in entry.objects if copyable(key)]
    for key in random.sample(held, min(sample, len(held))):
        mode, until = copy.lock_of(key)
        if mode != "COMPLIANCE" or until is None or until <= now:
            return [Finding("farm", "offsite", CRITICAL, f"{key} on the off-site copy is not locked (mode {mode}, "
                            f"until {until}): it can be deleted")]
    return [Finding("farm", "offsite", OK, f"{copy.url}: object lock on; {min(sample, len(held))} object(s) checked: "
                    "COMPLIANCE, locked")]


def copy_health(open_copy: Callable[[], S3Store], sites: list[str], listing: dict[str, SiteBackups], now: datetime,
                warning_hours: float, critical_hours: float, held: list[StoredObject] | None = None) -> list[Finding]:
    """The copy's lock state (one farm finding, first), then each site's lag; a copy that cannot be
    read (keys wrong, endpoint dead) is one critical finding. `held` gets the copy's listing."""
    try:
        copy = open_copy()
        objects = list(copy.list(SITES))
        if held is not None:
            held += objects
        copied = group_listing(objects)
        state = lock_findings(copy, copied, now)
    except WpfarmError as exc:
        return [Finding("farm", "offsite", CRITICAL, f"the off-site copy cannot be read: {exc}")]
    return state + offsite_findings(sites, listing, copied, now, warning_hours, critical_hours)


def copy_integrity(copy: S3Store, repository: Callable[[str], Repository], sites: list[str],
                   now: datetime) -> list[Finding]:
    """Per site with a file store on the copy: `restic check` of it (with the copy's keys), reading
    today's 1/30 of its packs as the primary's integrity check does; critical on any error."""
    subset, findings = check_subset(now), []
    listing = group_listing(list(copy.list(SITES)))
    for site in sites:
        if f"{repository_prefix(site)}config" not in (listing[site].objects if site in listing else {}):
            continue
        try:
            repository(site).check(subset)
        except ResticError as exc:
            findings.append(Finding(site, "offsite", CRITICAL, f"restic check of the off-site copy failed: {exc}"))
            continue
        findings.append(Finding(site, "offsite", OK, f"restic check of the off-site copy read packs {subset}, no errors"))
    return findings


def materialize_repository(store: Store, site: str, into: str | os.PathLike) -> Path:
    """The site's restic repository from `store` (e.g. the copy as of a time) as a local folder that
    restic reads with `-r`: every file written, each restic file checked against its name."""
    root = Path(into).resolve()
    prefix = repository_prefix(site)
    for obj in store.list(prefix):
        if not copyable(obj.key):
            continue
        path = (root / obj.key[len(prefix):]).resolve()
        if not path.is_relative_to(root):
            raise OffsiteError(f"{obj.key} escapes the repository")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            for chunk in _chunks(store, obj.key, digest):
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
    nothing there is deleted. An object of another size there (vandalised) is replaced; one of the
    same size is not compared: recover into an empty target."""
    names = sorted(sites) if sites is not None else sorted(group_listing(list(source.list(SITES))))
    return [copy_new(source, target, prefix, replace_changed=True)[0]
            for prefix in [*(site_root(n) for n in names), BINLOGS]]
