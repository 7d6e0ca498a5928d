"""`wpfarm backup`, `drill`, `binlogs` and `offsite`: the commands that take or copy backups and prove them."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

import dagster as dg

from wpfarm_assets.cli.runs import (
    chosen_sites,
    instance,
    object_store_of,
    offsite_store_of,
    run_job,
    run_over_sites,
    store_of,
    sync_partitions,
)
from wpfarm_assets.core.config import (
    ConfigError,
    FarmConfig,
    validate_site_name,
)


def backup(names: list[str], config: FarmConfig, failed_only: bool = False) -> int:
    """Back up the named sites (all when none), in runs of sites_per_run; with failed_only, exactly
    the partitions of each asset whose latest attempt failed (what a UI backfill of failed
    partitions does)."""
    from sensors.retention_after_backup import RETENTION_BY_CLI
    from wpfarm_assets.backups.assets import database_dump, file_archive
    from wpfarm_assets.partitions import sites

    selected = chosen_sites(names, config)
    inst = instance()
    order = sync_partitions(inst, config)
    plan: list[tuple[list[str] | None, list[str]]] = [(None, selected)]
    if failed_only:
        plan = []
        for asset in (database_dump, file_archive):
            status = inst.get_status_by_partition(asset.key, selected, sites)
            failed = [n for n, st in status.items() if st == dg.AssetPartitionStatus.FAILED]
            plan.append(([asset.key], failed))
            print(f"{asset.key.to_user_string()}: {len(failed)} failed site(s) to retry")
    ok = all([run_over_sites("back_up_sites", chosen, order, config, inst, {RETENTION_BY_CLI: "cli"},
                             asset_selection=assets) for assets, chosen in plan])
    # As the retention sensors do after every backup run (also a failed one), without the daemon.
    backed_up = sorted({name for _, chosen in plan for name in chosen})
    ok = run_over_sites("apply_retention", backed_up, order, config, inst, {RETENTION_BY_CLI: "cli"}) and ok
    if config.backup.offsite:  # as the offsite sensors do after every retention run
        ok = run_over_sites("copy_offsite", backed_up, order, config, inst) and ok
    ok = run_job("check_backup_health", config, inst).success and ok  # as sensors/checks_after_runs.py does
    return 0 if ok else 1


def drill(names: list[str], config: FarmConfig) -> int:
    """Restore drills of the named sites (all when none) now, in runs of sites_per_run; per site its
    result, RTO and what was proven. Exit 1 if any drill failed."""
    from wpfarm_assets.backups.drill import last_drills

    selected = chosen_sites(names, config)
    inst = instance()
    order = sync_partitions(inst, config)
    started = datetime.now(timezone.utc)
    ok = run_over_sites("drill_sites", selected, order, config, inst)
    ok = run_job("check_backup_health", config, inst).success and ok  # as sensors/checks_after_runs.py does
    store = store_of(config)
    records, _ = last_drills(store, selected)
    width = max((len(n) for n in selected), default=4)
    for name in selected:
        record = records.get(name)
        if record is None or datetime.fromisoformat(record["started_at"]) < started.replace(microsecond=0):
            print(f"{name:{width}}  NOT DRILLED")
            ok = False
            continue
        proven = (f"{record.get('tables', 0)} tables, {record.get('rows', 0)} rows, "
                  + (f"{record['views']} views and {record['routines_called']} routines run, "
                     if record.get("views") or record.get("routines_called") else "")
                  + f"{record.get('files', 0)} files, {record['bytes_restored']:,} bytes")
        timing = (f"(database {record.get('db_seconds', 0):.1f} s, files {record.get('files_seconds', 0):.1f} s)")
        if "pitr_seconds" in record:
            timing += (f" + binary logs to {record['pitr_reach'][11:19]}: {record['pitr_transactions']} transactions, "
                       f"{record['pitr_binlog_bytes'] / 1e6:.1f} MB in {record['pitr_seconds']:.1f} s "
                       f"({record['pitr_seconds_per_mb']:.2f} s/MB)")
        if record["passed"]:
            print(f"{name:{width}}  PASSED  RTO {record['rto_seconds']:.1f} s {timing}  proven: {proven}")
        else:  # no RTO: nothing was recovered
            print(f"{name:{width}}  FAILED  after {record['rto_seconds']:.1f} s {timing}\n  "
                  + "\n  ".join(record["problems"]))
    return 0 if ok else 1


def binlogs(config: FarmConfig) -> int:
    """Archive the binary logs now (the archive_binlogs job, as its schedule runs it): which node,
    what was archived, how far the archive reaches, and its check. Exit 1 if either failed."""
    from wpfarm_assets.backups.assets import binlog_archive

    if not config.database.pitr_enabled:
        raise ConfigError("point-in-time recovery is not configured: set database.galera_nodes (Galera), or "
                          "database.pitr: true for a standalone server that writes binary logs")
    result = run_job("archive_binlogs", config, instance())
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        print(f"from {meta['node']}: {meta['logs_archived']} log(s), {meta['transactions']} transaction(s), "
              f"{meta['archived']}; archived until {meta['archived_until']}"
              + (f"; passed over {meta['passed_over']}" if meta["passed_over"] != "none" else "")
              + (f"; GAP: {meta['gap']}" if meta["gap"] != "none" else ""))
    checked = [e for e in result.get_asset_check_evaluations() if e.asset_key == binlog_archive.key]
    for evaluation in checked:
        print(f"{'ok' if evaluation.passed else evaluation.severity.value}: {evaluation.description}")
    return 0 if result.success and all(e.passed for e in checked) else 1


def offsite(args: argparse.Namespace, config: FarmConfig) -> int:
    """`offsite copy [SITE…]`: the copy_offsite job now. `offsite recover`: every site's backups (and
    the binary-log archive) from the copy as it was at --as-of, written to --to, manifests last;
    what is there already is left alone, so it can be run again after an interruption."""
    from wpfarm_assets.backups.offsite import recover
    from wpfarm_assets.backups.pitr import parse_time

    if config.backup.offsite is None:
        raise ConfigError("no off-site copy is configured (backup.offsite in farm.yaml)")
    if args.offsite_command == "copy":
        selected = chosen_sites(args.sites, config)
        inst = instance()
        ok = run_over_sites("copy_offsite", selected, sync_partitions(inst, config), config, inst)
        ok = run_job("check_backup_health", config, inst).success and ok
        return 0 if ok else 1
    from resources.object_store import AsOfStore

    as_of = parse_time(args.as_of, "--as-of")
    held = AsOfStore(offsite_store_of(config)(), as_of)
    for name in args.site or []:
        if not any(True for _ in held.list(f"sites/{name}/")):
            raise ConfigError(f"the off-site copy held nothing of {name} as of {as_of:%Y-%m-%d %H:%M:%S} UTC")
    if not args.site and not any(True for _ in held.list("sites/")):
        raise ConfigError(f"the off-site copy held nothing as of {as_of:%Y-%m-%d %H:%M:%S} UTC: nothing to recover")
    for name in args.site or []:
        validate_site_name(name)
    copy = offsite_store_of(config)()
    target = object_store_of(config).model_copy(update={"target": args.to}).store()
    started = time.monotonic()
    reports = recover(AsOfStore(copy, as_of), target, args.site)
    for report in reports:
        print(f"{report.prefix}: {report.backups_copied} backup(s), {len(report.copied)} object(s), "
              f"{report.bytes_copied:,} bytes")
    print(f"recovered {sum(r.backups_copied for r in reports)} backup(s) of {len(reports) - 1} site(s) from "
          f"{copy.url} as of {as_of:%Y-%m-%d %H:%M:%S} UTC into {target.url} in {time.monotonic() - started:.1f} s")
    # The copy's current view too (what was deleted or rewritten there since), so that the next copy
    # finds it whole: the versions of that time written again, as new (locked) versions.
    repaired = recover(AsOfStore(copy, as_of), copy, args.site)
    print(f"the copy's current view: {sum(len(r.copied) for r in repaired)} object(s) put back as of that time")
    return 0
