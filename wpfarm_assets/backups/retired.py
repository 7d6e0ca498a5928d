"""Retired sites: a site removed from the farm configuration is retired, not forgotten. Customers
leave and come back, and ask for their data weeks later.

Its record (`sites/<site>/retired.json`, written the first time wpfarm sees it gone: the inventory
sensor, `wpfarm status`, or the retired_sites asset of every check_backup_health run) says when. Its partition stays; its
backups stay listable and restorable from the store alone (its site record says what it was), are
kept under the normal tiers for `retention.retired_days`, with a warning a week before, and are then
deleted with everything else of the site (and its partition). Listed back in farm.yaml, it is an
active site again and its history goes on (health.record_sites removes the retired record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from resources.object_store import Store, StoreError, exists
from wpfarm_assets.backups.health import OK, WARNING, Finding, SiteBackups, group_listing, record_sites
from wpfarm_assets.backups.retention import plan_retention
from wpfarm_assets.backups.verify import read_manifest
from wpfarm_assets.core.config import ConfigError, FarmConfig, Site
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import KINDS, retired_record_key, site_record_key, site_root, split_future

WARN_DAYS = 7  # before a retired site's backups are deleted


@dataclass(frozen=True)
class RetiredSite:
    name: str
    retired_at: datetime
    newest: dict[str, datetime | None]  # per kind
    deleted_on: datetime  # when its backups go


def retire(store: Store, names: list[str], now: datetime) -> None:
    """Write the retired record of each of `names` that has none."""
    for name in names:
        key = retired_record_key(name)
        if not exists(store, key):
            store.put_bytes(key, json.dumps({"site": name, "retired_at": now.isoformat()}).encode())


def record_retirements(store: Store, config: FarmConfig, listing: dict[str, SiteBackups], now: datetime) -> list[str]:
    """Bring the retired records in line with the configuration: a site in the store's listing that
    it does not list is retired now (if it was not yet); one it lists again is retired no more.
    The names retired now."""
    configured = {s.name for s in config.sites}
    record_sites(store, [s for s in config.sites if s.name in listing and listing[s.name].retired], now)  # back
    leaving = sorted(name for name, entry in listing.items() if name not in configured and entry.retired is None)
    retire(store, leaving, now)
    return leaving


def retired_sites_of(config: FarmConfig, listing: dict[str, SiteBackups], now: datetime) -> list[RetiredSite]:
    """Every site in the store's listing that the configuration does not list, with its newest
    backups and when they will be deleted (one not recorded as retired yet: from now)."""
    configured = {s.name for s in config.sites}
    keep = timedelta(days=config.retention.retired_days)
    found = []
    for name in sorted(n for n in listing if n not in configured):
        retired_at = listing[name].retired or now
        newest = {kind: max((k.time for k in listing[name].backups[kind]), default=None) for kind in KINDS}
        found.append(RetiredSite(name, retired_at, newest, retired_at + keep))
    return found


def beyond_tiers(entry: SiteBackups, now: datetime, daily: int, weekly: int, monthly: int) -> bool:
    """Whether retention would delete any of a retired site's backups (as apply_retention judges:
    never the newest, never one stamped in the future). It gets no new ones, so once retention has
    run this stays False: its backups are not re-read every hour."""
    for keys in entry.backups.values():
        times, _ = split_future(keys, now)
        kept = set(plan_retention([k.time for k in times], daily, weekly, monthly)) | {k.time for k in times[-1:]}
        if {k.time for k in times} - kept:
            return True
    return False


def retired_findings(retired: list[RetiredSite], now: datetime) -> list[Finding]:
    """One finding per retired site (kind `retired`): ok, or a warning in the week before its backups go."""
    findings = []
    for r in retired:
        newest = ", ".join(f"{kind} {t:%Y-%m-%d %H:%M}" if t else f"no {kind}" for kind, t in r.newest.items())
        left = (r.deleted_on - now).total_seconds() / 86400
        severity = WARNING if left <= WARN_DAYS else OK
        findings.append(Finding(r.name, "retired", severity,
                                f"retired on {r.retired_at:%Y-%m-%d}; newest backups: {newest}; kept until "
                                f"{r.deleted_on:%Y-%m-%d}" + (f" (in {max(left, 0):.1f} days: restore or re-add it "
                                                             "now if it is still wanted)" if severity == WARNING else ""),
                                r.retired_at))
    return findings


def expire_retired(store: Store, retired: list[RetiredSite], now: datetime) -> list[str]:
    """Delete everything of each retired site past its `deleted_on` (its whole `sites/<site>/`: backups,
    file store, drill records, site and retired records; the retired record last); the names. A site
    whose retired record is gone meanwhile (listed again, or expired by another run) is left alone."""
    expired = []
    for r in (r for r in retired if r.deleted_on <= now):
        keys = sorted(obj.key for obj in store.list(site_root(r.name)))
        if retired_record_key(r.name) not in keys:
            continue
        store.delete([k for k in keys if k != retired_record_key(r.name)])
        store.delete([retired_record_key(r.name)])
        expired.append(r.name)
    return expired


def site_or_retired(config: FarmConfig, store: Store, name: str) -> tuple[Site, bool]:
    """(the site, whether it is retired): from the configuration, else from the store alone: its site
    record, with the database and content path its newest backups name (a site can have moved since
    it joined). A name that is neither is a clear error."""
    try:
        return config.site(name), False
    except ConfigError:
        entry = group_listing(list(store.list(site_root(name)))).get(name)
    if entry is None:
        raise ConfigError(f"site {name!r} is not in the farm configuration, and has nothing in {store.url}") from None
    fields: dict = {"name": name}
    try:
        if site_record_key(name) in entry.objects:
            record = json.loads(store.get_bytes(site_record_key(name)))
            fields.update({k: record[k] for k in ("database", "content_path") if isinstance(record.get(k), str)})
    except (ValueError, StoreError):
        pass  # the manifests may still say
    for kind, field in (("db", "database"), ("files", "content_path")):
        for key in reversed(entry.backups[kind]):
            try:
                value = getattr(read_manifest(store, key), field)
            except WpfarmError:
                continue
            if value:
                fields[field] = value
                break
    try:
        return Site(**fields), True
    except ValidationError as exc:
        raise ConfigError(f"site {name!r} is retired, and its records do not say what it was: "
                          + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


def in_place_problem(site: str, kind: str, to_database: str | None, to_path: str | None) -> str | None:
    """Why a restore of retired `site` cannot go where it would: in place, to a site that is not there."""
    if (kind != "files" and not to_database) or (kind != "db" and not to_path):
        return (f"site {site} is retired (not in the farm configuration): restore it into another database and "
                "folder (--to-database, and --to-path for its files), or list it in farm.yaml again to restore it "
                "in place")
    return None
