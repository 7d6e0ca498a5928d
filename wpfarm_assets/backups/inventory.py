"""The farm-wide backup inventory: one row per site and kind, from one listing of the store."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import pandas as pd

from resources.object_store import Store
from wpfarm_assets.backups.retention import RULES, plan_retention
from wpfarm_assets.core.keys import KINDS, SITES, parse_manifest_key, site_of, stored_kind

# DigitalOcean Spaces: $5 a month includes 250 GiB; each further GiB costs $0.02 a month.
SPACES_BASE_USD, SPACES_INCLUDED_GIB, SPACES_USD_PER_GIB = 5.0, 250, 0.02
GIB = 1 << 30
COLUMNS = ["site", "state", "kind", "newest_backup", "age_hours", *RULES, "restore_points", "stored_bytes", "monthly_cost_usd"]


def spaces_monthly_cost(stored_bytes: int) -> float:
    """The farm's Spaces bill for this much stored data."""
    return SPACES_BASE_USD + max(0.0, stored_bytes / GIB - SPACES_INCLUDED_GIB) * SPACES_USD_PER_GIB


def backup_inventory(store: Store, sites: list[str], now: datetime, daily: int = 14, weekly: int = 26,
                     monthly: int = 12) -> pd.DataFrame:
    """Rows for every configured site (state `active`) and every site with backups in the store
    (removed sites': `retired`).

    stored_bytes counts everything under the site and kind (for files: the site's restic repository
    too, so the bytes are what the store bills); monthly_cost_usd is that share at the
    per-GiB rate (the $5 base and the included 250 GiB are farm-wide: see spaces_monthly_cost).
    """
    times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    stored: dict[tuple[str, str], int] = defaultdict(int)
    for obj in store.list(SITES):
        kind = stored_kind(obj.key)
        if kind is None:
            continue
        stored[site_of(obj.key), kind] += obj.size
        key = parse_manifest_key(obj.key)
        if key:
            times[key.site, key.kind].append(key.time)
    rows, configured = [], set(sites)
    for site in sorted(configured | {site for site, _ in stored}):
        for kind in KINDS:
            backups = times.get((site, kind), [])
            plan = plan_retention(backups, daily, weekly, monthly)
            newest = max(backups) if backups else None
            size = stored.get((site, kind), 0)
            rows.append({
                "site": site,
                "state": "active" if site in configured else "retired",
                "kind": kind,
                "newest_backup": newest.isoformat() if newest else None,
                "age_hours": round((now - newest).total_seconds() / 3600, 1) if newest else None,
                **{tier: sum(1 for t in plan.values() if t == tier) for tier in RULES},
                "restore_points": len(backups),
                "stored_bytes": size,
                "monthly_cost_usd": round(size / GIB * SPACES_USD_PER_GIB, 4),
            })
    return pd.DataFrame(rows, columns=COLUMNS)
