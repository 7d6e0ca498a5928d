"""The checks on `backup_inventory`: every site's backup age, the integrity of every site's newest
backups, and every site's last restore drill. Each brings Alertmanager in line with what it finds
(fire and resolve)."""

from datetime import datetime, timezone

import dagster as dg

from resources.alerts import AlertmanagerResource
from resources.object_store import ObjectStoreResource
from wpfarm_assets.backups.assets import (
    backup_inventory,
    binlog_archive,
    database_dump,
    file_archive,
    offsite_copy,
    size_text,
)
from wpfarm_assets.backups.drill import DRILL_ALERT, farm_drill_findings
from wpfarm_assets.backups.health import (
    ALERTING,
    CRITICAL,
    KEY_CRITICAL_DAYS,
    KEY_WARNING_DAYS,
    NEW,
    OK,
    WARNING,
    Finding,
    backup_age,
    backup_integrity,
    farm_key,
    group_listing,
    identity_flags,
    sync_alerts,
)
from wpfarm_assets.backups.inventory import spaces_monthly_cost
from wpfarm_assets.backups.offsite import LOCK_SAMPLE, OFFSITE_ALERT, copy_health, copy_integrity
from wpfarm_assets.backups.pitr import binlog_findings, read_archive
from wpfarm_assets.backups.retired import retired_findings, retired_sites_of
from wpfarm_assets.core.config import FarmConfig
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import SITES


def health_result(context, farm: FarmConfig, findings: list, alertmanager: AlertmanagerResource,
                  alertname: str, ok_text: str | None = None, extra: dict | None = None) -> dg.AssetCheckResult:
    """The check result for a set of findings, after bringing Alertmanager in line with them."""
    link = f"{farm.alerts.dagster_url.rstrip('/')}/runs/{context.run.run_id}"
    alerts = sync_alerts(alertmanager, alertname, findings, link, {s.name for s in farm.sites})
    return findings_result(findings, {**({"alerts_firing": alerts["firing"], "alerts_resolved": alerts["resolved"]}
                                         if alertmanager.url else {"alerts": "off (no alerts.alertmanager_url)"}),
                                      **(extra or {})}, ok_text)


def age_findings(farm: FarmConfig, object_store: ObjectStoreResource) -> list:
    """backup_age for every configured site, and retired_findings for every retired one, from one
    listing of the store."""
    store, now = object_store.store(), datetime.now(timezone.utc)
    listing = group_listing(list(store.list(SITES)))
    return backup_age([s.name for s in farm.sites], listing, now, farm.alerts.warning_after_hours,
                      farm.alerts.critical_after_hours, identity_flags(store, listing, now)) + retired_findings(
        retired_sites_of(farm, listing, now), now)  # a warning (and alert) the week before their backups go


@dg.asset_check(asset=backup_inventory, description="Per site and kind: the newest backup's age against the thresholds.")
def backup_age_check(context: dg.AssetCheckExecutionContext, farm: dg.ResourceParam[FarmConfig],
                     object_store: ObjectStoreResource, alertmanager: AlertmanagerResource) -> dg.AssetCheckResult:
    return health_result(context, farm, age_findings(farm, object_store), alertmanager, "WpfarmBackupStale")


def findings_result(findings: list, extra: dict | None = None, ok_text: str | None = None) -> dg.AssetCheckResult:
    """The check result for findings: failed (ERROR with a critical one, else WARN) listing the sites
    that are not ok as a table; new sites are counted apart."""
    bad = [f for f in findings if f.severity in ALERTING]
    counts = {severity: sum(1 for f in findings if f.severity == severity) for severity in (OK, NEW, WARNING, CRITICAL)}
    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"site": f.site, "kind": f.kind, "severity": f.severity, "reason": f.reason,
                                 "age_hours": f.age_hours}) for f in bad],  # None: no backup at all
        schema=dg.TableSchema(columns=[dg.TableColumn("site"), dg.TableColumn("kind"), dg.TableColumn("severity"),
                                       dg.TableColumn("reason"), dg.TableColumn("age_hours", "float")]),
    )
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR if counts[CRITICAL] else dg.AssetCheckSeverity.WARN,
        metadata={**counts, "not_ok": table, **(extra or {})},
        description=", ".join(f"{f.site} {f.kind}: {f.reason}" for f in bad[:20]) or ok_text or (
            "every site is fine" + (f" ({counts[NEW]} new: nothing to check yet)" if counts[NEW] else "")),
    )


def kind_age_check(asset: dg.AssetsDefinition, kind: str) -> dg.AssetChecksDefinition:
    """Per-site staleness on the backup asset itself (the alerts come from backup_age_check)."""
    @dg.asset_check(asset=asset, name="backup_age", description=f"Per site: the newest {kind} backup's age "
                    "against alerts.warning_after_hours / critical_after_hours (a table of the sites that are not ok).")
    def check(farm: dg.ResourceParam[FarmConfig], object_store: ObjectStoreResource) -> dg.AssetCheckResult:
        return findings_result([f for f in age_findings(farm, object_store) if f.kind == kind])
    return check


database_dump_age_check = kind_age_check(database_dump, "db")
file_archive_age_check = kind_age_check(file_archive, "files")


@dg.asset_check(asset=backup_inventory, description="The newest backups match their manifests (dumps: sha256; snapshots: in their repository, "
                "and restic check reads 1/30 of each repository's packs a day, on the off-site copy too); sizes look normal.")
def backup_integrity_check(context: dg.AssetCheckExecutionContext, farm: dg.ResourceParam[FarmConfig],
                           object_store: ObjectStoreResource, alertmanager: AlertmanagerResource) -> dg.AssetCheckResult:
    store = object_store.store()
    findings = backup_integrity(store, [s.name for s in farm.sites], group_listing(list(store.list(SITES))),
                                repository=object_store.repository)
    if farm.backup.offsite:  # the copy's repositories too, with the copy's keys
        from wpfarm_assets.definitions import initialized  # (definitions imports this module)

        offsite = initialized(farm, "offsite")
        try:
            findings += copy_integrity(offsite.store(), offsite.repository, [s.name for s in farm.sites],
                                       datetime.now(timezone.utc))
        except WpfarmError as exc:
            findings.append(Finding("farm", "offsite", CRITICAL, f"the off-site copy cannot be checked: {exc}"))
    return health_result(context, farm, findings, alertmanager, "WpfarmBackupIntegrity")


@dg.asset_check(asset=backup_inventory, description="Per site: its last restore drill passed, within twice "
                "drill.every_days, with an RTO under drill.rto_warning_minutes.")
def restore_drill_check(context: dg.AssetCheckExecutionContext, farm: dg.ResourceParam[FarmConfig],
                        object_store: ObjectStoreResource, alertmanager: AlertmanagerResource) -> dg.AssetCheckResult:
    return health_result(context, farm, farm_drill_findings(object_store.store(), farm), alertmanager, DRILL_ALERT)


@dg.asset_check(asset=backup_inventory, description=f"The farm key's expiry (backup.gpg_recipient): warning "
                f"{KEY_WARNING_DAYS} days before, critical {KEY_CRITICAL_DAYS} days before and after (database backups "
                "then fail with that reason).")
def farm_key_check(context: dg.AssetCheckExecutionContext, farm: dg.ResourceParam[FarmConfig],
                   alertmanager: AlertmanagerResource) -> dg.AssetCheckResult:
    finding = farm_key(farm.backup.gpg_recipient, farm.backup.gpg_home, datetime.now(timezone.utc))
    return health_result(context, farm, [finding], alertmanager, "WpfarmFarmKey", finding.reason)


BINLOG_ALERT = "WpfarmBinlogArchive"


@dg.asset_check(asset=binlog_archive, name="archive_age", description="The binary-log archive's age (the farm's "
                "RPO: warning after 15 min, critical after 60) and any gap within database.pitr_days (critical).")
def binlog_archive_check(context: dg.AssetCheckExecutionContext, farm: dg.ResourceParam[FarmConfig],
                         object_store: ObjectStoreResource, alertmanager: AlertmanagerResource) -> dg.AssetCheckResult:
    archive = read_archive(object_store.store(), ends_only=True)
    findings = binlog_findings(archive, farm, datetime.now(timezone.utc))
    return health_result(context, farm, findings, alertmanager, BINLOG_ALERT, findings[0].reason)


@dg.asset_check(asset=offsite_copy, name="copy_lag", description="The off-site copy: its bucket has object lock and a "
                f"sample of {LOCK_SAMPLE} of its objects are locked (COMPLIANCE), else critical; per site, the oldest "
                "backup on the primary not yet copied (warning, critical after the backup-age thresholds).")
def offsite_copy_check(context: dg.AssetCheckExecutionContext, farm: dg.ResourceParam[FarmConfig],
                       object_store: ObjectStoreResource, offsite: ObjectStoreResource,
                       alertmanager: AlertmanagerResource) -> dg.AssetCheckResult:
    farm_sites, now = [s.name for s in farm.sites], datetime.now(timezone.utc)
    held: list = []
    findings = copy_health(offsite.store, farm_sites, group_listing(list(object_store.store().list(SITES))), now,
                           farm.alerts.warning_after_hours, farm.alerts.critical_after_hours, held)
    stored = sum(o.size for o in held)  # current versions; locked older ones are billed too, for up to lock_days
    return health_result(context, farm, findings, alertmanager, OFFSITE_ALERT, findings[0].reason,
                         {"copy_stored_bytes": stored, "copy_stored": size_text(stored),
                          "copy_monthly_cost_usd_at_spaces_prices": round(spaces_monthly_cost(stored), 2)})
