"""`wpfarm status`: every site's newest backups, drill, recovery window and copy, and the farm's key."""

from __future__ import annotations

from datetime import datetime, timezone

from wpfarm_assets.cli.runs import instance, offsite_store_of, store_of
from wpfarm_assets.core.config import (
    FarmConfig,
)
from wpfarm_assets.core.keys import SITES
from wpfarm_assets.partitions import mark_retired


def status(config: FarmConfig) -> int:
    """Per site: each kind's newest backup, its age and its state, and the last restore drill. A
    site with nothing to check yet is NEW, counted apart. Exit 1 if any is warning or critical."""
    from wpfarm_assets.backups.drill import farm_drill_findings
    from wpfarm_assets.backups.health import (
        ALERTING,
        NEW,
        OK,
        backup_age,
        farm_key,
        group_listing,
        identity_flags,
        record_sites,
    )
    from wpfarm_assets.backups.pitr import binlog_findings, pitr_findings, pitr_on, read_archive
    from wpfarm_assets.backups.retired import record_retirements, retired_findings, retired_sites_of

    store = store_of(config)
    now = datetime.now(timezone.utc)
    listing = group_listing(list(store.list(SITES)))
    # A site just added to farm.yaml joins now (as the inventory sensor would record it): it is NEW.
    joining = [s for s in config.sites if s.name not in listing or listing[s.name].added is None]
    if joining:
        record_sites(store, joining, now)
        listing = group_listing(list(store.list(SITES)))
    findings = backup_age([s.name for s in config.sites], listing, now, config.alerts.warning_after_hours,
                          config.alerts.critical_after_hours, identity_flags(store, listing, now))
    drills = {f.site: f for f in farm_drill_findings(store, config, now)}
    archive = read_archive(store, ends_only=True) if pitr_on(config, store) else None
    windows = {f.site: f for f in pitr_findings(store, [s.name for s in config.sites], archive, now)} if archive else {}
    copy_state, copies = [], {}
    if config.backup.offsite:  # the copy's lock state (a farm row), and each site's lag
        from wpfarm_assets.backups.offsite import copy_health

        copy_state = copy_health(offsite_store_of(config), [s.name for s in config.sites], listing, now,
                                 config.alerts.warning_after_hours, config.alerts.critical_after_hours)
        copies = {f.site: f for f in copy_state if f.site != "farm"}
        copy_state = [f for f in copy_state if f.site == "farm"]
    findings = [f for site in sorted({f.site for f in findings}) for f in
                [*(g for g in findings if g.site == site), drills[site], *([windows[site]] if windows else []),
                 *([copies[site]] if site in copies else [])]]
    if archive is not None:  # the farm's recovery point, and any gap in the archive
        findings += binlog_findings(archive, config, now)
    findings.append(farm_key(config.backup.gpg_recipient, config.backup.gpg_home, now))
    findings += copy_state
    width = max([len(f.site) for f in findings] + [4])
    print(f"{'SITE':{width}}  KIND        NEWEST (UTC)          AGE h  STATE     DETAIL")
    for f in findings:
        newest = f.newest.strftime("%Y-%m-%d %H:%M:%S") if f.newest else "-"
        age = f"{f.age_hours:.1f}" if f.age_hours is not None else "-"
        print(f"{f.site:{width}}  {f.kind:10}  {newest:20}  {age:>5}  {f.severity.upper():8}  {f.reason}")
    mark_retired(instance(), record_retirements(store, config, listing, now), config.retention.retired_days)
    retired = retired_findings(retired_sites_of(config, listing, now), now)
    if retired:
        print(f"\nretired sites (removed from the farm configuration; backups kept "
              f"{config.retention.retired_days} days under the normal tiers, then deleted):")
        for f in retired:
            print(f"{f.site:{width}}  {f.severity.upper():8}  {f.reason}")
    findings += retired
    from wpfarm_assets.backups.clone import clones

    if staging := clones(store):
        print("\nclones (staging copies: not backed up, not drilled; wpfarm clone --delete NAME removes one):")
        for c in sorted(staging, key=lambda c: c["name"]):
            print(f"{c['name']:{width}}  clone of {c['clone_of']} at {c['url']}, made {c['created_at'][:16]} "
                  f"from {c['database_backup'].rsplit('/', 1)[-1]}, database {c['database']}")
    bad = [f for f in findings if f.severity in ALERTING]
    print(f"\n{sum(f.severity == OK for f in findings)} ok, {sum(f.severity == NEW for f in findings)} new "
          f"(nothing to check yet), {sum(f.severity == 'warning' for f in bad)} warning, "
          f"{sum(f.severity == 'critical' for f in bad)} critical "
          f"(backups: warning after {config.alerts.warning_after_hours:g} h, critical after "
          f"{config.alerts.critical_after_hours:g} h; drills: due every {config.drill.every_days} days)")
    if archive is not None:
        print(f"RPO: {next(f.reason for f in findings if f.kind == 'binlog')}")
    return 1 if bad else 0
