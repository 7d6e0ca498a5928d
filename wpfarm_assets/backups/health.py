"""Backup health: how old each site's newest backup is, and whether the newest backups are intact.

Plain functions over the store's listing (one listing for the farm). The same findings feed the
`backup_age` and `backup_integrity` checks in the UI, `wpfarm status`, and the Alertmanager alerts.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from resources.gpg import GPGError, encryption_expiry, key_fingerprint
from resources.object_store import Store, StoredObject, StoreError, exists
from resources.restic import Repository, ResticError
from wpfarm_assets.backups.verify import record_refusal, verify_backup
from wpfarm_assets.core.config import Site
from wpfarm_assets.core.keys import (
    KINDS,
    BackupKey,
    parse_manifest_key,
    parse_refusal_key,
    restoring_key,
    retired_record_key,
    site_of,
    site_record_key,
    snapshot_ids,
    split_future,
)

# NEW: nothing wrong yet (a site added within the warning threshold, not backed up or drilled yet);
# shown and counted apart from ok, and no alert.
OK, NEW, WARNING, CRITICAL = "ok", "new", "warning", "critical"
ALERTING = (WARNING, CRITICAL)
CHECK_ROTATION = 30  # days in which `restic check` reads every pack of every repository once
KEY_WARNING_DAYS, KEY_CRITICAL_DAYS = 30, 7  # before the farm key expires (critical after, too)

def record_sites(store: Store, sites: list[Site], now: datetime) -> None:
    """Write each new site's record (kept when the site is removed; not rewritten if it returns). A
    retired site that comes back is not retired any more: its history goes on."""
    for site in sites:
        key = site_record_key(site.name)
        if not exists(store, key):
            store.put_bytes(key, json.dumps({**site.model_dump(), "added_at": now.isoformat()}).encode())
        if exists(store, retired_record_key(site.name)):
            store.delete([retired_record_key(site.name)])


@dataclass(frozen=True)
class Finding:
    site: str
    kind: str
    severity: str  # ok | warning | critical
    reason: str
    newest: datetime | None = None
    age_hours: float | None = None


@dataclass
class SiteBackups:
    """One site's objects, grouped: the site record and, per kind, the complete backups (oldest first)."""

    added: datetime | None
    backups: dict[str, list[BackupKey]]
    objects: dict[str, StoredObject]
    refused: set[BackupKey] = field(default_factory=set)  # backups a restore or check found bad
    retired: datetime | None = None  # when it left the farm configuration (its retired record)
    restoring: dict[str, datetime] = field(default_factory=dict)  # per kind: a restore into the live site began
    # per kind: checkpoints, taken before a restore overwrote the live site (not among `backups`)
    checkpoints: dict[str, list[BackupKey]] = field(default_factory=lambda: {kind: [] for kind in KINDS})


def group_listing(objects: list[StoredObject]) -> dict[str, SiteBackups]:
    sites: dict[str, SiteBackups] = {}
    for obj in objects:
        site = site_of(obj.key)
        if site is None:
            continue
        entry = sites.setdefault(site, SiteBackups(None, {kind: [] for kind in KINDS}, {}))
        entry.objects[obj.key] = obj
        if obj.key == site_record_key(site):
            entry.added = obj.modified
        elif obj.key == retired_record_key(site):
            entry.retired = obj.modified
        elif kind := next((k for k in KINDS if obj.key == restoring_key(site, k)), None):
            entry.restoring[kind] = obj.modified
        elif (key := parse_manifest_key(obj.key)) is not None and key.site == site:
            entry.backups[key.kind].append(key)
        elif (key := parse_refusal_key(obj.key)) is not None and key.site == site:
            entry.refused.add(key)
    for entry in sites.values():
        for kind, backups in entry.backups.items():
            entry.checkpoints[kind] = [k for k in backups if k.checkpoint_key in entry.objects]
            backups[:] = sorted(k for k in backups if k.checkpoint_key not in entry.objects)
    return sites


def identity_flags(store: Store, listing: dict[str, SiteBackups], now: datetime) -> dict[str, str]:
    """Per site whose newest good dump holds another site's address (identity.py), why: read from
    its flag object, which the listing shows."""
    flags = {}
    for site, entry in listing.items():
        credible, _ = split_future(entry.backups["db"], now)
        good = [k for k in credible if k not in entry.refused]
        if good and good[-1].identity_key in entry.objects:
            try:
                reason = store.get_bytes(good[-1].identity_key).decode(errors="replace")
            except StoreError as exc:
                reason = f"is flagged as another site's (the flag cannot be read: {exc})"
            flags[site] = f"newest dump {good[-1].stamp} {reason}"
    return flags


def backup_age(sites: list[str], listing: dict[str, SiteBackups], now: datetime,
               warning_hours: float, critical_hours: float, identity: dict[str, str] | None = None) -> list[Finding]:
    """A finding per site and kind. Never backed up: critical once the site is older than the
    warning threshold (since its site record was written), ok before that. A site whose newest dump
    holds another site's address (`identity`, from identity_flags) is at least a warning, saying so."""
    findings = []
    for site in sorted(sites):
        entry = listing.get(site) or SiteBackups(None, {kind: [] for kind in KINDS}, {})
        for kind in KINDS:
            credible, future = split_future(entry.backups[kind], now)
            backups = [k for k in credible if k not in entry.refused]
            flagged = ""
            if future:
                stamps = ", ".join(k.stamp for k in future[:3])
                flagged = (f"; {len(future)} backup(s) stamped in the future ({stamps}): clock skew or a planted "
                           "object, never taken as the newest")
            bad = [k for k in credible if k in entry.refused and (not backups or k > backups[-1])]
            if bad:
                flagged += f"; newer backup {bad[-1].stamp} failed verification"
            if not backups:
                existed = max(0.0, (now - entry.added).total_seconds() / 3600) if entry.added else None
                if existed is not None and existed < warning_hours and not future and not bad:
                    findings.append(Finding(site, kind, NEW, f"new site ({existed:.1f} h), no backup yet"))
                else:
                    findings.append(Finding(site, kind, CRITICAL, ("no good backup" if bad else "never backed up") + flagged))
                continue
            if kind in entry.restoring:  # a restore over the live site began and never completed
                findings.append(Finding(site, kind, CRITICAL, INTERRUPTED.format(
                    what="database" if kind == "db" else "files", since=f"{entry.restoring[kind]:%Y-%m-%d %H:%M} UTC")
                    + flagged, backups[-1].time, round((now - backups[-1].time).total_seconds() / 3600, 1)))
                continue
            newest = backups[-1].time
            age = (now - newest).total_seconds() / 3600
            foreign = (identity or {}).get(site) if kind == "db" else None
            if foreign:
                flagged += f"; {foreign}"
            severity = (CRITICAL if age >= critical_hours or bad else
                        WARNING if age >= warning_hours or future or foreign else OK)
            findings.append(Finding(site, kind, severity, f"newest backup {age:.1f} h old{flagged}", newest,
                                    round(age, 1)))
    return findings


def farm_key(recipient: str, home: str | None, now: datetime) -> Finding:
    """The farm key's expiry: warning KEY_WARNING_DAYS before, critical KEY_CRITICAL_DAYS before and
    after (then every database backup fails, first, with that reason); revoked or missing: critical."""
    try:
        expires = encryption_expiry(recipient, home)
        fingerprint = key_fingerprint(recipient, home)
    except GPGError as exc:
        return Finding("farm", "key", CRITICAL, str(exc))
    if expires is None:
        return Finding("farm", "key", OK, f"the farm key {fingerprint} does not expire")
    days = (expires - now).total_seconds() / 86400
    when = f"{expires:%Y-%m-%d %H:%M} UTC"
    if days <= 0:
        return Finding("farm", "key", CRITICAL, f"the farm key {fingerprint} expired on {when}: database backups "
                       "fail until it is extended (gpg --quick-set-expire) or backup.gpg_recipient replaced")
    severity = CRITICAL if days <= KEY_CRITICAL_DAYS else WARNING if days <= KEY_WARNING_DAYS else OK
    advice = "; extend it (gpg --quick-set-expire) or set a new backup.gpg_recipient" if severity != OK else ""
    return Finding("farm", "key", severity, f"the farm key {fingerprint} expires on {when}, in {days:.1f} days{advice}")


INTERRUPTED = ("a restore of its {what} into the live site began at {since} and did not complete: the site may be "
               "half-restored; restore it again (backups of it are refused until then)")
RETIRED_SUMMARY = "retired: the site was removed from the farm configuration (its backups are kept)"


def sync_alerts(alertmanager, alertname: str, findings: list[Finding], link: str,
                configured: set[str] | None = None) -> dict[str, int]:
    """Fire an alert for every finding that is not ok; resolve the `alertname` alerts that no longer
    match one (a site backed up again, or a severity that changed). An alert of a site that is not
    among the `configured` ones any more resolves saying it was retired."""
    alerts = []
    for f in findings:
        if f.severity in ALERTING:
            annotations = {"summary": f.reason, "run": link}
            if f.age_hours is not None:
                annotations["age_hours"] = str(f.age_hours)
            alerts.append(({"site": f.site, "kind": f.kind, "severity": f.severity}, annotations))
    retired = None if configured is None else (
        lambda labels: RETIRED_SUMMARY if labels.get("site") not in (configured | {None, "farm"}) else None)
    return alertmanager.sync(alertname, alerts, retired)


def check_subset(now: datetime) -> str:
    """The part of every repository's packs `restic check` reads today: one of 30, in turn, so that
    every pack is read within 30 days (`--read-data-subset=n/30`)."""
    return f"{now.toordinal() % CHECK_ROTATION + 1}/{CHECK_ROTATION}"


def backup_integrity(store: Store, sites: list[str], listing: dict[str, SiteBackups],
                     repository: Callable[[str], Repository], now: datetime | None = None) -> list[Finding]:
    """Check the newest backup of each site and kind: a stored object's size and sha256 match its
    manifest, the dump ended complete (a size under half or over double the median of the site's
    earlier backups is a warning); a snapshot is in the site's repository, and `restic check` of
    that repository, reading today's share of its packs (check_subset), finds no error. And one
    older object backup a day per site and kind, in turn (a dump, or an archive from before the file
    store), read whole: a bad one is recorded as refused and is a warning."""
    now = now or datetime.now(timezone.utc)
    findings = []
    for site in sorted(sites):
        entry = listing.get(site)
        for kind in KINDS:
            backups, _ = split_future(entry.backups[kind] if entry else [], now)
            if not backups:
                continue
            newest = backups[-1]
            finding = _check_newest(store, entry, newest, backups[:-1], now, repository)
            older = [k for k in backups[:-1] if k.data_key in entry.objects and k not in entry.refused]
            if finding.severity == OK and older:
                key = older[now.toordinal() % len(older)]
                try:
                    _, problem = verify_backup(store, key, listed_size=entry.objects[key.data_key].size)
                except StoreError:
                    problem = None  # the store, not the backup; the newest was read fine just now
                if problem:
                    record_refusal(store, key, problem)
                    finding = Finding(site, kind, WARNING, f"older backup {key.stamp}: {problem}", newest.time)
            findings.append(finding)
    return findings


def _check_newest(store: Store, entry: SiteBackups, newest: BackupKey, earlier: list[BackupKey], now: datetime,
                  repository: Callable[[str], Repository]) -> Finding:
    finding = lambda severity, reason: Finding(newest.site, newest.kind, severity, reason, newest.time)  # noqa: E731
    stored = entry.objects.get(newest.data_key)
    try:
        manifest, problem = verify_backup(store, newest, listed_size=stored.size if stored else None,
                                          snapshots=snapshot_ids(entry.objects, newest.site))
    except StoreError as exc:  # the store, not the backup: reported, not recorded against it
        return finding(CRITICAL, f"{newest.kind} backup {newest.stamp} cannot be read: {exc}")
    if problem:
        record_refusal(store, newest, problem)  # from now on the age check flags the site too
        return finding(CRITICAL, problem)
    if manifest.is_snapshot:
        subset = check_subset(now)
        repo = repository(newest.site)
        try:
            repo.check(subset)
        except ResticError as exc:  # a damaged repository, or one that cannot be reached: either needs an operator
            try:
                busy = repo.locked()
            except ResticError:
                busy = False
            if busy:  # a prune or backup was working on it: not a finding against the backup
                return finding(WARNING, f"restic check inconclusive while the repository was in use: {exc}")
            return finding(CRITICAL, f"restic check of the site's repository failed: {exc}")
        return finding(OK, f"snapshot {manifest.snapshot_id[:8]} listed; restic check read packs {subset}, no errors")
    sizes = [entry.objects[k.data_key].size for k in earlier[-14:] if k.data_key in entry.objects]
    if len(sizes) >= 3:
        median = statistics.median(sizes)
        if stored.size < median / 2 or stored.size > median * 2:
            return finding(WARNING, f"{stored.size} bytes against a median of {median:.0f} for the last {len(sizes)}")
    return finding(OK, "size and sha256 match the manifest")
