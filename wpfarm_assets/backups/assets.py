"""The backup assets. Thin: read config and resources, call the plain modules, report metadata.

Per site (`sites` partitions): database_dump, file_archive, retention, restore_drill. One run covers any number of
sites (a partition range, BackfillPolicy.single_run) and works on them in parallel. One site's
failure does not hide the others: each site that succeeded is recorded as its own materialization
as soon as it is done, and the step then fails naming exactly the sites that did not. Retention
runs in its own run after each backup run (sensors/retention_after_backup.py).
Farm-wide: backup_inventory, one row per site and kind.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import dagster as dg

from resources.alerts import AlertError, AlertmanagerResource, PushgatewayResource
from resources.gpg import GPGResource
from resources.mariadb import MariaDBResource
from resources.object_store import ObjectStoreResource
from resources.ssh import LocalRunner, NodeResource
from wpfarm_assets.backups.backup import Backup
from wpfarm_assets.backups.backup import back_up_database as _back_up_database
from wpfarm_assets.backups.backup import back_up_files as _back_up_files
from wpfarm_assets.backups.drill import DrillError, drill_site, sync_drill_alerts
from wpfarm_assets.backups.health import group_listing
from wpfarm_assets.backups.inventory import backup_inventory as inventory_frame
from wpfarm_assets.backups.inventory import spaces_monthly_cost
from wpfarm_assets.backups.offsite import copy_prefix, copy_site
from wpfarm_assets.backups.pitr import PitrError, archive_binlogs, binlog_retention
from wpfarm_assets.backups.retention import RULES, RetentionReport, apply_retention, list_sites
from wpfarm_assets.backups.retired import (
    beyond_tiers,
    expire_retired,
    record_retirements,
    retired_findings,
    retired_sites_of,
)
from wpfarm_assets.core.binlog import parse_position, seq_in
from wpfarm_assets.core.config import FarmConfig, Site
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import BINLOGS, SITES
from wpfarm_assets.infrastructure.assets import database_tier, storage_tier
from wpfarm_assets.partitions import for_each_site, mark_retired, sites
from wpfarm_assets.provisioning.assets import site_provisioning

RETENTION_PARALLELISM = 8  # sites whose backups are listed and pruned at once (object store only)
# The asset-level picture (newest backup of *any* site); per-site age is the backup_age check.
BACKUP_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=50), warn_window=timedelta(hours=26))


def size_text(n: int) -> str:
    """Bytes as an operator reads them (the integer stays beside it, for sorting and Prometheus)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def published(context: dg.AssetExecutionContext, pushgateway: PushgatewayResource, backup: Backup) -> dict:
    """Push the backup's metrics (a Pushgateway outage is logged, never fails a good backup)."""
    try:
        pushgateway.push_backup(backup.manifest)
    except AlertError as exc:
        context.log.warning(f"site {backup.key.site}: metrics not pushed: {exc}")
    return backup_metadata(backup)


def backup_metadata(backup: Backup) -> dict:
    m = backup.manifest
    metadata = {
        "plaintext_bytes": m.plaintext_bytes,
        "plaintext": size_text(m.plaintext_bytes),
        "stored_bytes": m.stored_bytes,
        "stored": size_text(m.stored_bytes),
        "duration_seconds": m.duration_seconds,
        "source": m.source,
    }
    if m.is_snapshot:
        metadata.update(snapshot_id=m.snapshot_id, repository=m.repository, files=m.files, files_new=m.files_new,
                        files_changed=m.files_changed, files_unmodified=m.files_unmodified,
                        files_vanished=m.files_vanished or 0, skipped_large_files=dg.MetadataValue.json(m.skipped or []))
        return metadata
    metadata.update(object_key=m.object_key, sha256=m.sha256, key_fingerprint=m.key_fingerprint,
                    ratio=round(m.plaintext_bytes / m.stored_bytes, 2) if m.stored_bytes else 0.0)
    if m.database_node:
        metadata.update(database_node=f"{m.database_node} ({m.node_state})")
    if m.gtid is not None:
        metadata["gtid"] = m.gtid
    if m.tables is not None:
        metadata["tables"] = len(m.tables)
        metadata["rows"] = sum(m.tables.values())
        metadata["rows_per_table"] = dg.MetadataValue.json(m.tables)
    else:
        metadata["files"] = m.files
    return metadata


@dg.asset(
    partitions_def=sites,
    deps=[database_tier, site_provisioning],
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,  # each site's materialization is an event of for_each_site
    group_name="backups",
    kinds={"mariadb", "s3"},
    pool="database",
    freshness_policy=BACKUP_FRESHNESS,
)
def database_dump(
    context: dg.AssetExecutionContext,
    farm: dg.ResourceParam[FarmConfig],
    mariadb: MariaDBResource,
    database_node: NodeResource,
    object_store: ObjectStoreResource,
    gpg: GPGResource,
    pushgateway: PushgatewayResource,
) -> Iterator[dg.AssetMaterialization]:
    """The site's database: mariadb-dump → zstd → gpg → object store, with a manifest. On Galera, from
    the first Synced node of database.galera_nodes (never through ProxySQL), consistent with a GTID."""
    try:
        encrypt, fingerprint, unusable = gpg.encrypt_argv(), gpg.fingerprint(), None
    except WpfarmError as exc:  # the farm key cannot encrypt: every site fails with that, no dump is started
        encrypt = fingerprint = None
        unusable = exc
    try:
        db, server, passed = mariadb.source(database_node.runner(), farm.database.galera_nodes)
    except WpfarmError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    for reason in passed:
        context.log.warning(f"passed over {reason}")
    store = object_store.store()

    def one(site: Site) -> dict:
        if unusable:
            raise WpfarmError(f"site {site.name}: database backup not started: {unusable}")
        backup = _back_up_database(site, db, store, encrypt, fingerprint, server=server)
        return {**published(context, pushgateway, backup), **({"passed_over": "; ".join(passed)} if passed else {})}

    yield from for_each_site(context, farm, farm.database.parallelism, one)


@dg.asset(
    partitions_def=sites,
    deps=[storage_tier, site_provisioning],
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,  # each site's materialization is an event of for_each_site
    group_name="backups",
    kinds={"restic", "s3"},
    pool="storage",
    freshness_policy=BACKUP_FRESHNESS,
)
def file_archive(
    context: dg.AssetExecutionContext,
    farm: dg.ResourceParam[FarmConfig],
    storage_node: NodeResource,
    object_store: ObjectStoreResource,
    pushgateway: PushgatewayResource,
) -> Iterator[dg.AssetMaterialization]:
    """The site's wp-content (and wp-config.php): a restic snapshot in the site's repository (only
    what changed since the last one is read and stored), with a manifest."""
    runner = storage_node.runner()
    store = object_store.store()

    def one(site: Site) -> dict:
        repository = object_store.repository(site.name, runner)
        backup = _back_up_files(site, runner, store, repository, max_file_bytes=farm.backup.max_file_bytes)
        if backup.manifest.skipped:
            context.log.warning(f"site {site.name}: {len(backup.manifest.skipped)} file(s) over backup.max_file_bytes "
                                f"left out: " + ", ".join(f["path"] for f in backup.manifest.skipped[:5]))
        return published(context, pushgateway, backup)

    yield from for_each_site(context, farm, farm.storage.parallelism, one)


class RetentionRunConfig(dg.Config):
    dry_run: bool = False  # report what would be deleted, delete nothing
    as_of: str | None = None  # ISO UTC time to judge upload ages by (replays and tests); default now


@dg.asset(
    partitions_def=sites,
    deps=[database_dump, file_archive],
    # Not the backups' policy, so that a backfill never runs retention in the same run as them (it
    # would be skipped: their steps have no output): it runs once their sites are materialized.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1000),
    output_required=False,  # each site's materialization is an event of for_each_site
    group_name="backups",
    kinds={"s3"},
    pool="storage",
)
def retention(
    context: dg.AssetExecutionContext, config: RetentionRunConfig, farm: dg.ResourceParam[FarmConfig],
    object_store: ObjectStoreResource,
) -> Iterator[dg.AssetMaterialization]:
    """Keeps the site's 14 daily / 26 weekly / 12 monthly restore points per kind; deletes the rest."""
    store = object_store.store()
    rules = farm.retention
    now = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(timezone.utc)

    listings = list_sites(store, context.partition_keys)

    def one(site: Site) -> dict:
        report = apply_retention(store, site.name, now, daily=rules.daily, weekly=rules.weekly,
                                 monthly=rules.monthly, dry_run=config.dry_run, listing=listings[site.name],
                                 repository=object_store.repository(site.name))
        return retention_metadata(report)

    yield from for_each_site(context, farm, RETENTION_PARALLELISM, one)


def retention_metadata(report: RetentionReport) -> dict:
    kept = {tier: sum(k.kept[tier] for k in report.kinds.values()) for tier in (*RULES, "checkpoint")}
    oldest = [k.oldest for k in report.kinds.values() if k.oldest]
    newest = [k.newest for k in report.kinds.values() if k.newest]
    return {
        **{f"kept_{tier}": n for tier, n in kept.items()},
        "deleted": report.deleted,
        "bytes_freed": report.bytes_freed,
        "freed": size_text(report.bytes_freed),
        "aborted_uploads_removed": report.aborted_removed,
        "snapshots_forgotten": len(report.snapshots_forgotten),
        "oldest_restore_point": min(oldest).isoformat() if oldest else "none",
        "newest_restore_point": max(newest).isoformat() if newest else "none",
        "dry_run": report.dry_run,
        "per_kind": dg.MetadataValue.json({
            kind: {**k.kept, "deleted": k.deleted, "bytes_freed": k.bytes_freed} for kind, k in report.kinds.items()
        }),
    }


OFFSITE_PARALLELISM = 4  # sites copied at once (object store to object store: no tier is touched)


@dg.asset(
    partitions_def=sites,
    deps=[database_dump, file_archive],
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1000),  # as retention: after the backups
    output_required=False,  # each site's materialization is an event of for_each_site
    group_name="backups",
    kinds={"s3"},
    pool="offsite",  # one copy step at a time, farm-wide (each also copies the binary-log archive)
)
def offsite_copy(context: dg.AssetExecutionContext, farm: dg.ResourceParam[FarmConfig],
                 object_store: ObjectStoreResource, offsite: ObjectStoreResource,
                 pushgateway: PushgatewayResource) -> Iterator[dg.AssetMaterialization]:
    """The site's backups copied to the off-site target (backup.offsite), byte for byte and checked
    by sha256, each object locked (S3 Object Lock, COMPLIANCE) for backup.offsite.lock_days, and
    locked again while the copy holds it. Only what is new travels; read from the primary target,
    never from the site. Refused, for every site, while the copy's bucket has no object lock. (The
    daily integrity check runs restic check on the copy's repositories.)"""
    now = datetime.now(timezone.utc)
    rules = farm.retention
    tiers = (rules.daily, rules.weekly, rules.monthly)
    try:
        primary, copy = object_store.store(), offsite.store()
        if problem := copy.lock_problem():
            raise WpfarmError(f"off-site copy refused: {problem}")
    except WpfarmError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    binlogs = None
    if farm.database.pitr_enabled:  # the farm's binary-log archive is a backup too
        try:
            binlogs = copy_prefix(primary, copy, BINLOGS, now, tiers, farm.database.pitr_days)
            context.log.info(f"binary logs: {len(binlogs.copied)} object(s) copied, {len(binlogs.deleted)} deleted")
        except WpfarmError as exc:
            binlogs = exc
            context.log.error(f"binary logs not copied: {exc}")

    def one(site: Site) -> dict:
        report = copy_site(primary, copy, site.name, now, tiers, farm.database.pitr_days)
        if report.changed:  # a backup object never changes: the copy keeps the one it has
            raise WpfarmError(f"site {site.name}: {len(report.changed)} backup object(s) changed on the primary "
                              f"since they were copied, e.g. {report.changed[0]}: the copy keeps its own (locked); "
                              "find out who rewrote them")
        if report.kept:
            context.log.info(f"site {site.name}: {len(report.kept)} object(s) gone from the primary are kept on the "
                             "copy (its own retention keeps them)")
        try:  # a Pushgateway outage is logged, never fails a good copy
            pushgateway.push_offsite(site.name, datetime.now(timezone.utc), report.bytes_copied)
        except AlertError as exc:
            context.log.warning(f"site {site.name}: metrics not pushed: {exc}")
        return {"copy": copy.url, "objects_copied": len(report.copied), "backups_copied": report.backups_copied,
                "bytes_copied": report.bytes_copied, "copied": size_text(report.bytes_copied),
                "objects_deleted": len(report.deleted), "gone_from_primary_kept": len(report.kept),
                "objects_locked_again": report.relocked, "lock_days": offsite.lock_days}

    yield from for_each_site(context, farm, OFFSITE_PARALLELISM, one)
    if isinstance(binlogs, WpfarmError):
        raise dg.Failure(f"binary logs not copied: {binlogs}", allow_retries=False)


class DrillRunConfig(dg.Config):
    window_ends: str | None = None  # ISO UTC time: no site is started after it (the schedule: its tick + drill.max_minutes)


# No upstream edge to the backups, on purpose: a drill proves whatever backup is newest when it runs,
# weekly, while backups land nightly; with the edge every drill showed "unsynced" 6 days out of 7,
# which hid the one that matters. Whether a drill is due or failed is the restore_drill check's job.
@dg.asset(
    partitions_def=sites,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,  # each site's materialization is an event of for_each_site
    group_name="backups",
    kinds={"mariadb", "restic"},
    pool="drill",  # one drill step at a time, farm-wide (drill.parallelism sites inside it)
)
def restore_drill(
    context: dg.AssetExecutionContext,
    config: DrillRunConfig,
    farm: dg.ResourceParam[FarmConfig],
    mariadb: MariaDBResource,
    database_node: NodeResource,
    object_store: ObjectStoreResource,
    alertmanager: AlertmanagerResource,
    pushgateway: PushgatewayResource,
) -> Iterator[dg.AssetMaterialization]:
    """The site's newest database and files backups restored into a scratch database and folder,
    proven against their manifests (tables, rows, core tables, files, bytes, wp-config.php), then
    removed; the metadata is the RTO. A failed drill is a critical alert (WpfarmRestoreDrill)."""
    db = mariadb.client(database_node.runner())
    store = object_store.store()
    runner = LocalRunner()
    closes = datetime.fromisoformat(config.window_ends) if config.window_ends else None
    if closes is not None and closes.tzinfo is None:
        closes = closes.replace(tzinfo=timezone.utc)  # a time typed in the launchpad: UTC, as everywhere

    def one(site: Site) -> dict:
        if closes is not None and datetime.now(timezone.utc) > closes:
            raise DrillError(f"site {site.name}: not drilled: the drill window closed at {config.window_ends}")
        try:
            record = drill_site(site, store, db, runner, object_store.repository(site.name, runner),
                                farm.drill.gnupg_home, farm.drill.scratch_root, farm_databases=farm.databases)
        except DrillError as exc:
            if exc.record:
                push_drill(exc.record)
            raise
        push_drill(record)
        return drill_metadata(record)

    def push_drill(record: dict) -> None:  # a Pushgateway outage is logged, never fails a drill
        try:
            pushgateway.push_drill(record)
        except AlertError as exc:
            context.log.warning(f"site {record['site']}: drill metrics not pushed: {exc}")

    try:
        yield from for_each_site(context, farm, farm.drill.parallelism, one)
    finally:
        try:
            sync_drill_alerts(store, farm, alertmanager, f"{farm.alerts.dagster_url.rstrip('/')}/runs/{context.run.run_id}")
        except WpfarmError as exc:  # Alertmanager or the store: the drills' own outcome stands
            context.log.warning(f"drill alerts not sent: {exc}")


def drill_metadata(record: dict) -> dict:
    return {
        "rto_seconds": record["rto_seconds"],
        "database_seconds": record.get("db_seconds", 0.0),
        "files_seconds": record.get("files_seconds", 0.0),
        "bytes_restored": record["bytes_restored"],
        "restored": size_text(record["bytes_restored"]),
        "tables": record.get("tables", 0),
        "rows": record.get("rows", 0),
        "files": record.get("files", 0),
        "backups_used": dg.MetadataValue.json(record["backups"]),
        **({"pitr_seconds": record["pitr_seconds"], "pitr_seconds_per_mb": record["pitr_seconds_per_mb"],
            "pitr_transactions": record["pitr_transactions"], "pitr_binlog_bytes": record["pitr_binlog_bytes"]}
           if "pitr_seconds" in record else {}),
    }


@dg.asset(group_name="backups", kinds={"s3"})
def retired_sites(context: dg.AssetExecutionContext, farm: dg.ResourceParam[FarmConfig],
                  object_store: ObjectStoreResource, pushgateway: PushgatewayResource) -> dg.MaterializeResult:
    """Sites removed from the farm configuration: recorded as retired (their partitions marked), their
    backups kept under the normal tiers for retention.retired_days, then deleted with everything else
    of the site and its partition; a warning in the week before (wpfarm_assets.backups.retired)."""
    store, now, rules = object_store.store(), datetime.now(timezone.utc), farm.retention
    listing = group_listing(list(store.list(SITES)))
    leaving = record_retirements(store, farm, listing, now)
    mark_retired(context.instance, leaving, rules.retired_days)
    retired = retired_sites_of(farm, listing, now)
    for r in retired:  # every run: the inventory sensor may have retired it, and a push may come late
        try:
            pushgateway.forget_site(r.name)
        except AlertError as exc:
            context.log.warning(f"retired site {r.name}: its metrics not deleted from the Pushgateway: {exc}")
    for r in retired:  # the normal tiers still apply while they are kept
        if not beyond_tiers(listing[r.name], now, rules.daily, rules.weekly, rules.monthly):
            continue
        try:
            apply_retention(store, r.name, now, daily=rules.daily, weekly=rules.weekly, monthly=rules.monthly,
                            repository=object_store.repository(r.name))
        except WpfarmError as exc:
            context.log.warning(f"retired site {r.name}: retention not applied: {exc}")
    try:
        expired = expire_retired(store, retired, now)
    except WpfarmError as exc:  # the store: the next run tries again; the inventory and checks go on
        context.log.warning(f"retired sites not expired: {exc}")
        expired = []
    for name in expired:
        context.log.info(f"retired site {name}: kept {rules.retired_days} days; its backups are deleted")
        if context.instance.has_dynamic_partition(sites.name, name):
            context.instance.delete_dynamic_partition(sites.name, name)
    findings = retired_findings([r for r in retired if r.name not in expired], now)
    return dg.MaterializeResult(metadata={
        "retired": len(findings),
        "deleted": dg.MetadataValue.json(expired),
        "sites": dg.MetadataValue.table(
            records=[dg.TableRecord({"site": f.site, "severity": f.severity, "detail": f.reason}) for f in findings],
            schema=dg.TableSchema(columns=[dg.TableColumn("site"), dg.TableColumn("severity"), dg.TableColumn("detail")])),
    })


@dg.asset(deps=[retention, restore_drill, retired_sites], group_name="backups", kinds={"pandas"})
def backup_inventory(context: dg.AssetExecutionContext, farm: dg.ResourceParam[FarmConfig],
                     object_store: ObjectStoreResource) -> dg.MaterializeResult:
    """One row per site and kind: newest backup, its age, restore points per tier, bytes, cost."""
    config = farm
    frame = inventory_frame(object_store.store(), [s.name for s in config.sites], datetime.now(timezone.utc),
                            config.retention.daily, config.retention.weekly, config.retention.monthly)
    total = int(frame["stored_bytes"].sum())
    never = sorted(set(frame.loc[frame["newest_backup"].isna(), "site"]))
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "sites": int(frame["site"].nunique()),
            "stored_bytes": total,
            "stored": size_text(total),
            "projected_monthly_cost_usd": round(spaces_monthly_cost(total), 2),
            "never_backed_up": dg.MetadataValue.json(never),
            "inventory": dg.MetadataValue.table(
                records=[dg.TableRecord({k: (v if v == v else None) for k, v in row.items()})
                         for row in frame.to_dict("records")],
                schema=dg.TableSchema(columns=[dg.TableColumn(c, str(frame[c].dtype)) for c in frame.columns]),
            ),
        },
    )


@dg.asset(
    deps=[database_tier],
    group_name="backups",
    kinds={"mariadb", "s3"},
    pool="binlogs",  # one archive run at a time: two would store the same logs twice
)
def binlog_archive(
    context: dg.AssetExecutionContext,
    farm: dg.ResourceParam[FarmConfig],
    mariadb: MariaDBResource,
    database_node: NodeResource,
    object_store: ObjectStoreResource,
    gpg: GPGResource,
    pushgateway: PushgatewayResource,
) -> dg.MaterializeResult:
    """The farm's binary logs since the last run (every database.binlog_every_minutes): FLUSH BINARY
    LOGS on the first Synced node, every closed log not archived yet compressed and encrypted to the
    farm's key, with a manifest. Continuous by GTID across nodes; a range no node still has is a gap
    (critical). The archive's age is the farm's recovery point (RPO)."""
    store = object_store.store()
    started = datetime.now(timezone.utc)
    try:
        db, status, passed = mariadb.source(database_node.runner(), farm.database.galera_nodes)
        if status is None:
            raise PitrError(f"the status of {mariadb.host}:{mariadb.port} (binary logging, GTIDs) cannot be read")
        run = archive_binlogs(mariadb.node(f"{db.host}:{db.port}"), status, db, store, gpg.encrypt_argv(),
                              gpg.fingerprint(), passed_over=passed)
    except WpfarmError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    deleted, retention = [], "at the first run of each hour"
    if started.minute < farm.database.binlog_every_minutes:  # it reads every site's dumps: once an hour
        try:
            deleted = binlog_retention(store, farm.sites, farm.database.pitr_days)
            retention = f"{len(deleted)} expired object(s) deleted"
        except WpfarmError as exc:  # the archive itself worked: its age must still be pushed
            retention = f"failed: {exc}"
            context.log.warning(f"binary-log retention {retention}")
    for reason in passed:
        context.log.warning(f"passed over {reason}")
    if run.gap:
        context.log.error(f"binary-log archive gap: {run.gap['lost']} were never archived")
    age = (datetime.now(timezone.utc) - run.reach).total_seconds() if run.reach else None
    try:
        pushgateway.push_binlog_archive(run.reach, age)
    except AlertError as exc:
        context.log.warning(f"binlog archive metrics not pushed: {exc}")
    lag = {}
    for address in farm.database.galera_nodes or [run.node]:
        try:
            with mariadb.node(address) as connection:
                node = connection.status()
            lag[address] = {"state": node.state, "transactions_behind_archive": max(
                0, seq_in(parse_position(node.gtid_binlog_pos), status.gtid_domain) - run.end_seq)}
        except WpfarmError as exc:
            lag[address] = {"state": f"unreachable: {exc}"}
    archived_bytes = sum(m.plaintext_bytes for m in run.archived)
    return dg.MaterializeResult(metadata={
        "node": run.node,
        "passed_over": "; ".join(passed) or "none",
        "logs_archived": len(run.archived),
        "transactions": sum(m.transactions for m in run.archived),
        "archived_bytes": archived_bytes,
        "archived": size_text(archived_bytes),
        "stored_bytes": sum(m.stored_bytes for m in run.archived),
        "end_gtid_seq": run.end_seq,
        "archived_until": run.reach.isoformat() if run.reach else "nothing archived",
        "archive_age_seconds": round(age, 1) if age is not None else None,
        "lag_per_node": dg.MetadataValue.json(lag),
        "gap": run.gap["lost"] if run.gap else "none",
        "retention": retention,
    })
