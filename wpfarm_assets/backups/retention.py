"""Retention: which backups of a site to keep (14 daily, 26 weekly, 12 monthly), and safe cleanup.

`plan_retention` is the whole policy, as a pure function. `apply_retention` applies it to one site's
backups in a store: one listing of the site's prefix, deletes in batches, manifests first; for files
backups in the file store, then `restic forget` of exactly the expired snapshots and a `restic prune`
of the site's repository (restic's exclusive lock: a prune never runs while that site's backup does,
and fails, loudly, instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from resources.object_store import Store, StoredObject, UnfinishedUpload
from resources.restic import Repository
from wpfarm_assets.backups.verify import read_manifest, verify_backup
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import (
    KINDS,
    SITES,
    BackupKey,
    kind_of,
    parse_manifest_key,
    repository_prefix,
    site_of,
    site_prefix,
    site_root,
    snapshot_ids,
    split_future,
)
from wpfarm_assets.core.manifest import ManifestError

RULES = ("daily", "weekly", "monthly")
CHECKPOINT_KEPT = timedelta(days=7)  # a checkpoint (taken before a restore overwrote the site), outside the tiers
ABORTED_UPLOAD_AGE = timedelta(days=1)
# From this many sites on, one paginated listing of the whole farm costs fewer requests than one
# listing per site (a site holds a few hundred objects: one page; the farm, one page per 1000).
FARM_WIDE_LISTING_FROM = 50


def _period(rule: str, time: datetime) -> tuple:
    if rule == "daily":
        return (time.year, time.month, time.day)
    if rule == "weekly":
        iso = time.isocalendar()
        return (iso.year, iso.week)
    return (time.year, time.month)


def plan_retention(backup_times: Iterable[datetime], daily: int = 14, weekly: int = 26,
                   monthly: int = 12) -> dict[datetime, str]:
    """Map each backup time to keep onto its tier ("daily", "weekly", "monthly"); others expire.

    borg prune's semantics, exactly:
    - the rules run in order daily → weekly → monthly, each over all backups, newest first;
    - a rule looks at the newest backup of each period (UTC day; ISO week, Monday to Sunday; month)
      and keeps it, until it has kept as many as asked;
    - a backup already kept by an earlier rule does not count toward a later one: its period is
      passed over (it is still that period's newest, so no older backup of it is taken instead);
    - periods with no backup are skipped: they do not count;
    - while a rule has kept fewer than asked, it also keeps the oldest backup of all.

    So with a year or more of daily backups the three tiers never overlap: 14 + 26 + 12 = 52
    restore points. restic's `forget --keep-daily/weekly/monthly` counts differently: one snapshot
    may fill a daily, a weekly and a monthly slot at once, so the same policy yields about 46
    distinct restore points and reaches less far back. We promise 52 points (the seed's
    backup-cleanup.sh promise), so we follow borg.
    """
    times = sorted({_utc(t) for t in backup_times}, reverse=True)
    kept: dict[datetime, str] = {}
    for rule, wanted in zip(RULES, (daily, weekly, monthly), strict=True):
        if wanted <= 0 or not times:
            continue
        last_period, count = None, 0
        for time in times:
            period = _period(rule, time)
            if period == last_period:
                continue
            last_period = period
            if time in kept:
                continue
            kept[time] = rule
            count += 1
            if count == wanted:
                break
        else:
            kept.setdefault(times[-1], rule)  # the rule is short: keep the oldest backup
    return kept


def plan_kind(backups: list[BackupKey], listed, now: datetime, daily: int = 14, weekly: int = 26,
              monthly: int = 12) -> dict[datetime, str]:
    """The plan for one site and kind (`backups` oldest first, none in the future): the tiers over
    its backups, its checkpoints (a `.checkpoint` among the `listed` keys) kept CHECKPOINT_KEPT
    outside them, and the newest never deleted, whatever the counts say."""
    checkpoints = {k for k in backups if k.checkpoint_key in listed}
    plan = plan_retention([k.time for k in backups if k not in checkpoints], daily, weekly, monthly)
    plan.update({k.time: "checkpoint" for k in checkpoints if now - k.time < CHECKPOINT_KEPT})
    plan.setdefault(backups[-1].time, "checkpoint" if backups[-1] in checkpoints else "daily")
    return plan


def _utc(time: datetime) -> datetime:
    if time.tzinfo is None:
        raise ValueError(f"backup time {time} must be timezone-aware (UTC)")
    return time.astimezone(timezone.utc)


@dataclass
class SiteListing:
    objects: list[StoredObject] = field(default_factory=list)
    uploads: list[UnfinishedUpload] = field(default_factory=list)


def list_sites(store: Store, sites: list[str]) -> dict[str, SiteListing]:
    """Every object and unfinished upload under each site's prefix, in as few listings as possible."""
    listings = {site: SiteListing() for site in sites}
    if len(sites) < FARM_WIDE_LISTING_FROM:
        for site in sites:
            prefix = site_root(site)
            listings[site] = SiteListing(list(store.list(prefix)), store.unfinished_uploads(prefix))
        return listings
    for obj in store.list(SITES):
        if (listing := listings.get(site_of(obj.key))) is not None:
            listing.objects.append(obj)
    for upload in store.unfinished_uploads(SITES):
        if (listing := listings.get(site_of(upload.key))) is not None:
            listing.uploads.append(upload)
    return listings


class RetentionRefused(WpfarmError):
    """Retention did not run for a site (its newest backup failed verification); nothing was deleted."""


@dataclass
class KindReport:
    kept: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*RULES, "checkpoint"), 0))
    deleted: int = 0
    bytes_freed: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None


@dataclass
class RetentionReport:
    site: str
    dry_run: bool
    kinds: dict[str, KindReport] = field(default_factory=dict)
    aborted_removed: int = 0
    aborted_bytes: int = 0
    deleted_keys: list[str] = field(default_factory=list)
    snapshots_forgotten: list[str] = field(default_factory=list)  # restic snapshot ids, expired and aborted

    @property
    def deleted(self) -> int:
        return sum(k.deleted for k in self.kinds.values())

    @property
    def bytes_freed(self) -> int:
        return sum(k.bytes_freed for k in self.kinds.values()) + self.aborted_bytes


def apply_retention(store: Store, site: str, now: datetime, *, daily: int = 14, weekly: int = 26,
                    monthly: int = 12, dry_run: bool = False, listing: SiteListing | None = None,
                    repository: Repository | None = None) -> RetentionReport:
    """Keep what `plan_retention` keeps for each kind of the site's backups; delete the rest.

    Safety: refuses (deleting nothing) when the newest backup of a kind fails verification (its
    object is missing, or not the size and sha256 its manifest records, read whole; a snapshot not
    in the repository); never deletes the newest backup;
    deletes each expired backup's manifest before its object, so a half-deleted backup never looks
    complete; removes aborted uploads (objects without a manifest, unfinished multipart uploads)
    older than a day. With dry_run, reports the same numbers and deletes nothing.
    `listing` is the site's objects when the caller listed many sites at once (list_sites).
    Files backups in the file store: after their manifests, the expired snapshots are forgotten, and
    so are snapshots older than a day that no manifest names (aborted backups); then the
    site's `repository` is pruned, and bytes_freed counts what the prune gave back.
    """
    site_prefix(site, "db")  # validates the name
    listing = listing or list_sites(store, [site])[site]
    objects = {obj.key: obj for obj in listing.objects}
    report = RetentionReport(site, dry_run)
    manifests_to_delete: list[str] = []
    objects_to_delete: list[str] = []
    referenced: set[str] = set()
    repo_prefix = repository_prefix(site)
    has_repository = f"{repo_prefix}config" in objects
    if has_repository and repository is None:
        raise RetentionRefused(f"site {site}: its file store repository was not given; retention skipped, nothing deleted")
    expired_snapshots: list[str] = []

    for kind in KINDS:
        every = [k for k in map(parse_manifest_key, objects) if k and k.kind == kind and k.site == site]
        for key in every:
            referenced.update((key.manifest_key, key.data_key, key.refusal_key, key.identity_key, key.checkpoint_key))
        # Backups stamped in the future are kept, and neither counted nor taken as the newest.
        backups, _ = split_future(every, now)
        kind_report = report.kinds.setdefault(kind, KindReport())
        if not backups:
            continue
        newest = backups[-1]
        if newest.refusal_key in objects:
            raise RetentionRefused(f"site {site}: newest {kind} backup {newest.stamp} failed verification "
                                   "(a restore or check refused it); retention skipped, nothing deleted")
        _verify(store, newest, objects)
        plan = plan_kind(backups, objects, now, daily, weekly, monthly)
        for key in backups:
            if key.time in plan:
                kind_report.kept[plan[key.time]] += 1
                continue
            if key.data_key not in objects and kind == "files" and has_repository:  # a snapshot's manifest
                try:
                    manifest = read_manifest(store, key)
                except ManifestError:
                    manifest = None  # deleted all the same: its snapshot is then one no manifest names
                if manifest is not None and manifest.is_snapshot:
                    expired_snapshots.append(manifest.snapshot_id)
            manifests_to_delete.append(key.manifest_key)
            kind_report.deleted += 1
            for k in (key.manifest_key, key.data_key, key.refusal_key, key.identity_key, key.checkpoint_key):
                if k in objects:
                    objects_to_delete.append(k)
                    kind_report.bytes_freed += objects[k].size
        kept_times = sorted(t for t in plan)
        kind_report.oldest, kind_report.newest = kept_times[0], kept_times[-1]

    aborted = [o for key, o in objects.items()
               if key not in referenced and kind_of(key) and now - o.modified > ABORTED_UPLOAD_AGE]
    report.aborted_removed = len(aborted)
    report.aborted_bytes = sum(o.size for o in aborted)
    stale_uploads = [u for u in listing.uploads if now - u.initiated > ABORTED_UPLOAD_AGE]
    report.aborted_removed += len(stale_uploads)

    files = [k for k in map(parse_manifest_key, objects) if k and k.kind == "files" and k.site == site]
    if has_repository and len(snapshot_ids(objects, site)) != sum(k.data_key not in objects for k in files):
        expired_snapshots += _aborted_snapshots(store, repository, files, objects, now)
    report.snapshots_forgotten = sorted(set(expired_snapshots))

    data_keys = [k for k in objects_to_delete if k not in manifests_to_delete] + [o.key for o in aborted]
    report.deleted_keys = manifests_to_delete + data_keys
    if not dry_run:
        store.delete(manifests_to_delete)  # first: from here on these backups no longer exist
        store.delete(data_keys)
        for upload in stale_uploads:
            store.abort_upload(upload)
        if report.snapshots_forgotten:
            before = sum(o.size for o in objects.values() if o.key.startswith(repo_prefix))
            repository.forget(report.snapshots_forgotten)
            repository.prune()
            after = sum(o.size for o in store.list(repo_prefix))
            report.kinds["files"].bytes_freed += max(0, before - after)
    return report


def _aborted_snapshots(store: Store, repository: Repository, files: list[BackupKey], objects: dict,
                       now: datetime) -> list[str]:
    """Snapshots no manifest names, a day old: aborted backups (killed between restic's snapshot
    and wpfarm's manifest). Asked only when the counts of snapshots and snapshot manifests differ
    (one restic call, and every files manifest read); none when a manifest cannot be read (its
    snapshot might be the one it names)."""
    named = set()
    for key in files:
        if key.data_key in objects:
            continue  # an older tar archive
        try:
            named.add(read_manifest(store, key).snapshot_id)
        except ManifestError:
            return []
    return [s.id for s in repository.snapshots() if s.id not in named and now - s.time > ABORTED_UPLOAD_AGE]


def _verify(store: Store, newest: BackupKey, objects: dict) -> None:
    stored = objects.get(newest.data_key)
    _, problem = verify_backup(store, newest, listed_size=stored.size if stored else None,
                               snapshots=snapshot_ids(objects, newest.site))
    if problem:
        raise RetentionRefused(
            f"site {newest.site}: newest {newest.kind} backup {newest.stamp} failed verification "
            f"({problem}); retention skipped, nothing deleted"
        )
