"""`wpfarm`: the few operator commands typed at 3 a.m. They run the same Dagster assets and jobs
against the instance in $DAGSTER_HOME, so everything they do shows in the web UI.

    wpfarm backup [SITE ...] [--failed]  back up the named sites now (all when none are named)
    wpfarm restore SITE [--date D | --at STAMP | --time T] [--to-database NAME] [--to-path DIR] [--kind all|db|files]
                        [--table NAME ...] [--path PART]
    wpfarm backups SITE [--verify]       every restore point of a site and its verification state
    wpfarm files SITE ls [PATH] | cat PATH [--at STAMP]   browse or read a files backup, restoring nothing
    wpfarm drill [SITE ...]              restore drills now: newest backups into scratch space, proven, RTO
    wpfarm status                        every site's newest backup and last drill, their age and state; the RPO
    wpfarm binlogs                       archive the binary logs now (point-in-time recovery)
    wpfarm demo [--sites N]              build a demo farm, back it up, restore one site and compare
    wpfarm site create NAME              add a site to the inventory, provision it, take its first backup
    wpfarm provision [--apply] [--step S]  plan (or apply) the farm's provisioning steps
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG
from dagster._core.workspace.load import location_origin_from_module_name

from wpfarm_assets.core.batches import site_runs
from wpfarm_assets.core.config import (
    ConfigError,
    FarmConfig,
    Site,
    add_site_to_file,
    load_config,
    validate_absolute_path,
    validate_identifier,
    validate_site_name,
)
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import KINDS, SITES, parse_stamp, site_root, snapshot_ids, split_future
from wpfarm_assets.dagster_storage import PROCESS_TAG, fail_dead_runs, this_process
from wpfarm_assets.partitions import mark_retired, run_tags

REPO = Path(__file__).resolve().parent.parent
# Dagster's event log belongs in the web UI; the terminal shows the results and failure reasons.
TERMINAL_LOGGING = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def instance() -> dg.DagsterInstance:
    """The instance in $DAGSTER_HOME (default ./.dagster, created with the project's dagster.yaml)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (REPO / "dagster.yaml").exists():
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.get()


def step_failures(result) -> list[str]:
    """The operator-facing reason of each failed step (Dagster's wrapper errors stripped)."""
    reasons = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None and "DagsterExecutionStepExecutionError" in error.cls_name:
                error = error.cause
            message = re.sub(r"^dagster\._core\.definitions\.events\.Failure: ", "", error.message.strip())
            reasons.append(f"{event.step_key}: {message}")
    return reasons


def object_store_of(config: FarmConfig):
    """The object_store resource, outside a run: its dg.EnvVar credentials resolved here."""
    from wpfarm_assets.definitions import build_resources

    return build_resources(config)["object_store"].process_config_and_initialize()


def offsite_store_of(config: FarmConfig):
    """A function opening the off-site copy (backup.offsite), outside a run."""
    from wpfarm_assets.definitions import build_resources

    return build_resources(config)["offsite"].process_config_and_initialize().store


def store_of(config: FarmConfig):
    """The backup target, outside a run."""
    return object_store_of(config).store()


def sync_partitions(inst: dg.DagsterInstance, config: FarmConfig) -> list[str]:
    """Add configured sites missing from the `sites` partitions (the sensor does the same, and deletes)."""
    from wpfarm_assets.backups.health import record_sites

    known = set(inst.get_dynamic_partitions("sites"))
    missing = [s for s in config.sites if s.name not in known]
    if missing:
        record_sites(store_of(config), missing, datetime.now(timezone.utc))
        inst.add_dynamic_partitions("sites", [s.name for s in missing])
    return inst.get_dynamic_partitions("sites")


def free_dead_slots(inst: dg.DagsterInstance) -> None:
    """Fail the runs whose process is gone and free their pool slots (a killed backup must not
    block the next one); say which live runs hold the pools, since this run will wait for them."""
    for line in fail_dead_runs(inst):
        print(f"wpfarm: {line}", file=sys.stderr)
    storage = inst.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    for pool in ("database", "storage", "drill", "binlogs", "offsite"):
        holders = sorted({slot.run_id for slot in storage.get_concurrency_info(pool).claimed_slots})
        if holders:
            print(f"wpfarm: pool {pool!r} is in use by run {', '.join(holders)}: steps of this run wait for it",
                  file=sys.stderr)


def code_location_origin(job_name: str) -> RemoteJobOrigin:
    """The job as the web UI and the daemon know it: in the code location of workspace.yaml
    (`python_module: wpfarm_assets.definitions`, the location `dagster dev -m` loads too)."""
    location = location_origin_from_module_name("wpfarm_assets.definitions", None, None)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job_name)


def run_job(job_name: str, config: FarmConfig, inst: dg.DagsterInstance, what: str = "", **kwargs
            ) -> dg.ExecuteInProcessResult:
    """Run a job of the code location in this process, recorded in `inst`; print its outcome. The
    run is tagged with this process, so that if it dies the next command fails the run. It belongs
    to the code location like a run the daemon launches: the repository label (the job's page and
    the runs filter find it while it runs), then, once it ends, the origin (the overview's timeline,
    the run-status sensors). Dagster's in-process execution sets neither."""
    from wpfarm_assets.definitions import build_definitions

    free_dead_slots(inst)
    origin = code_location_origin(job_name)
    run_config = {**TERMINAL_LOGGING, **kwargs.pop("run_config", {})}
    tags = {**kwargs.pop("tags", {}), PROCESS_TAG: this_process(),
            REPOSITORY_LABEL_TAG: origin.repository_origin.get_label()}
    try:
        result = build_definitions(config).resolve_job_def(job_name).execute_in_process(
            run_config=run_config, instance=inst, raise_on_error=False, tags=tags, **kwargs)
    finally:  # also when interrupted: the run is recorded by then
        for record in inst.get_run_records(dg.RunsFilter(tags={PROCESS_TAG: tags[PROCESS_TAG]}, job_name=job_name)):
            if record.dagster_run.remote_job_origin is None:
                inst.run_storage.replace_job_origin(record.dagster_run, origin)
    print(f"run {result.run_id}: {job_name}{' ' + what if what else ''}: {'success' if result.success else 'FAILED'}")
    for reason in step_failures(result):
        print(f"  {reason}", file=sys.stderr)
    if interrupted(result):
        raise KeyboardInterrupt
    return result


def interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether the run ended because this process was told to stop (SIGTERM, SIGINT)."""
    return any(e.event_type == dg.DagsterEventType.RUN_FAILURE and "Interrupt" in str(e.event_specific_data)
               for e in result.all_events) or result.dagster_run.status == dg.DagsterRunStatus.CANCELED


def chosen_sites(names: list[str], config: FarmConfig) -> list[str]:
    """The named sites (all when none); an unknown one is a clear error before anything runs."""
    for name in names:
        config.site(name)
    return names or [s.name for s in config.sites]


def run_over_sites(job_name: str, names: list[str], order: list[str], config: FarmConfig, inst: dg.DagsterInstance,
                   tags: dict | None = None, **kwargs) -> bool:
    """`job_name` over `names`, in runs of sites_per_run consecutive partitions; whether all succeeded."""
    ok = True
    for run in site_runs(names, order, config.backup.sites_per_run):
        ok = run_job(job_name, config, inst, f"site {run[0]}" if len(run) == 1 else f"sites {run[0]} .. {run[-1]}",
                     tags={**run_tags(run), **(tags or {})}, **kwargs).success and ok
    return ok


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


def clone(args: argparse.Namespace, config: FarmConfig) -> int:
    """`wpfarm clone SITE NEW_NAME`: a staging clone at a new address; `--delete NAME` removes one
    (backups/clone.py). Files restored on this machine; the database through this machine's client."""
    from resources.ssh import LocalRunner
    from wpfarm_assets.backups.clone import clone_problem, clone_target, delete_clone
    from wpfarm_assets.definitions import build_resources

    runner = LocalRunner()  # the clone's folder is on this machine; its database through this client
    db = build_resources(config)["mariadb"].process_config_and_initialize().client(runner)
    resource = object_store_of(config)
    store = resource.store()
    if args.delete:
        if args.name:
            raise ConfigError("clone --delete takes one name: the clone's")
        record = delete_clone(store, db, runner, config, args.site)
        print(f"{args.site}: clone of {record['clone_of']} removed (database {record['database']}, "
              f"folder {record['content_path'].rsplit('/', 1)[0]})")
        return 0
    if not args.name:
        raise ConfigError("clone SITE NEW_NAME: the new name is missing")
    if args.at:
        parse_at(args.at)
    if args.date:
        date.fromisoformat(args.date)
    database, content_path = clone_target(config, args.name, args.database, args.content_path)
    if problem := clone_problem(config, store, db, runner, args.name, database, content_path):
        raise ConfigError(f"clone {args.name} of {args.site}: {problem}; refused")
    op_config = {"site": args.site, "name": args.name, "date": args.date, "at": args.at, "database": args.database,
                 "content_path": args.content_path, "url": args.url, "gnupg_home": args.gnupg_home}
    result = run_job("clone_site", config, instance(), f"{args.site} as {args.name}",
                     run_config={"ops": {"clone_site_op": {"config": op_config}}})
    if not result.success:
        return 1
    done = result.output_for_node("clone_site_op")
    print(f"{done['name']}: clone of {done['clone_of']} at {done['url']}: database {done['database']} "
          f"(from {done['database_backup'].rsplit('/', 1)[-1]}), files in {done['content_path']}; "
          "search engines asked to stay away (blog_public 0)")
    for table, rows in sorted(done["rows_changed"].items()):
        print(f"  {table}: {rows} row(s) rewritten")
    if done["left_alone"]:
        print(f"  {done['left_alone']} value(s) looked serialized but did not decode: left as they were")
    print(f"remove it with: wpfarm clone --delete {done['name']}")
    return 0


def export(args: argparse.Namespace, config: FarmConfig) -> int:
    """`wpfarm export SITE --to FILE`: the site's backup as one zip for its owner (backups/export.py)."""
    from wpfarm_assets.backups.export import export_site
    from wpfarm_assets.backups.retired import site_or_retired

    if args.at:
        parse_at(args.at)
    to = Path(validate_absolute_path(str(Path(args.to).absolute())))
    if not to.parent.is_dir():
        raise ConfigError(f"--to {args.to}: folder {to.parent} does not exist")
    if to.exists() or to.is_symlink():
        raise ConfigError(f"--to {args.to} exists: refused (an export never replaces a file)")
    resource = object_store_of(config)
    site, _ = site_or_retired(config, resource.store(), args.site)
    done = export_site(site, resource.store(), resource.repository(site.name), args.gnupg_home, to, args.at,
                       args.include_secrets)
    print(f"{site.name}: exported database {done['database']} ({done['sql_bytes']:,} bytes of SQL) and files "
          f"{done['files']} ({done['file_count']} files) to {done['path']}, {done['bytes']:,} bytes"
          + ("" if done["secrets"] else "; wp-config.php's password, keys and salts blanked"))
    print(f"sha256 {done['sha256']}  {done['path']}")
    return 0


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


def restore(args: argparse.Namespace, config: FarmConfig) -> int:
    from wpfarm_assets.backups.retired import in_place_problem, site_or_retired

    site, retired = site_or_retired(config, store_of(config), args.site)
    if args.path and args.kind not in (None, "files"):
        raise ConfigError("--path is a part of the files: it goes with --kind files only")
    if args.table and (args.kind not in (None, "db") or args.time or args.path):
        raise ConfigError("--table is a part of the database: it goes with --kind db, and --at or --date "
                          "(not --time, yet)")
    args.kind = args.kind or ("files" if args.path else "db" if args.table else "all")
    if retired and (problem := in_place_problem(site.name, args.kind, args.to_database, args.to_path)):
        raise ConfigError(problem)
    if args.path:
        from wpfarm_assets.backups.restore import validate_member_path

        validate_member_path(args.path, Path(site.content_path).name)
    if args.date:
        try:
            date.fromisoformat(args.date)
        except ValueError:
            raise ConfigError(f"--date {args.date!r}: use YYYY-MM-DD (a UTC day)") from None
    if args.as_of and args.source != "offsite":
        raise ConfigError("--as-of is a time of the off-site copy: it goes with --from offsite")
    if args.source == "offsite":
        from wpfarm_assets.backups.pitr import parse_time

        if config.backup.offsite is None:
            raise ConfigError("--from offsite: no off-site copy is configured (backup.offsite in farm.yaml)")
        if args.time:
            raise ConfigError("--time replays binary logs from the primary target: from the copy, use --at or --date")
        if args.as_of:
            parse_time(args.as_of, "--as-of")
    if args.to_database:
        validate_identifier(args.to_database)
    if args.to_path:
        validate_absolute_path(args.to_path)
    if args.time:
        from wpfarm_assets.backups.pitr import parse_time

        if args.date or args.at:
            raise ConfigError("--time, --date and --at each choose what to restore: give one")
        if args.path:
            raise ConfigError("--time restores the database to a second: --path is for a files backup (use --at)")
        parse_time(args.time)
    if args.at:
        if args.kind == "all":
            raise ConfigError("--at names one backup, of one kind: add --kind db or --kind files "
                              "(a site's database and files backups have stamps of their own)")
        parse_at(args.at)
    if problem := config.restore_target_problem(site, args.to_database, args.to_path):
        if not args.force:
            raise ConfigError(f"{problem}; refused (add --force to do it anyway)")
        print(f"wpfarm: {problem}; going on: --force", file=sys.stderr)
    op_config = {
        "force": args.force,
        "site": args.site,
        "kind": args.kind,
        "date": args.date,
        "at": args.at,
        "time": args.time,
        "to_database": args.to_database,
        "to_path": args.to_path,
        "path": args.path,
        "gnupg_home": args.gnupg_home,
        "tables": args.table,
        "source": args.source,
        "as_of": args.as_of,
        "checkpoint": args.checkpoint,
    }
    result = run_job("restore_site", config, instance(), args.site,
                     run_config={"ops": {"restore_site_op": {"config": op_config}}})
    if not result.success:
        return 1
    for kind, restored in result.output_for_node("restore_site_op").items():
        for refusal in restored["refused"]:
            print(f"{args.site}: {kind} backup {refusal}: refused", file=sys.stderr)
        if restored["checkpoint"]:
            print(f"{args.site}: {kind} checkpoint {restored['checkpoint']} taken first (kept 7 days); to undo: "
                  f"wpfarm restore {args.site} --kind {kind} --at {restored['checkpoint']}")
        elif not args.checkpoint:
            print(f"{args.site}: no {kind} checkpoint taken (--no-checkpoint): this restore cannot be undone")
        where = restored.get("database") or restored.get("path")
        if "transactions_replayed" in restored:
            print(f"{args.site}: {kind} restored into {where} as of {restored['time']:%Y-%m-%d %H:%M:%S} UTC: "
                  f"{restored['dump']} (GTID {restored['dump_gtid']}) and {restored['transactions_replayed']} "
                  f"transaction(s) from {len(restored['binlogs'])} archived binary log(s)")
        elif "tables" in restored:
            print(f"{args.site}: table(s) {', '.join(restored['tables'])} restored into {where} from "
                  f"{restored['backup']} (swapped in at once; every other table untouched)")
        else:
            print(f"{args.site}: {kind} restored into {where} from {restored['backup']}")
    return 0


def backups(args: argparse.Namespace, config: FarmConfig) -> int:
    """Every restore point of a site, per kind, newest first, with its state: `ok` (listed at the
    size its manifest says; with --verify, read whole and its sha256 compared; a snapshot: in its
    repository, STORED BYTES being what it added), `REFUSED` (a
    restore or check found it bad), `FUTURE` (stamped ahead of now: never chosen). Exit 1 if any is not ok."""
    from wpfarm_assets.backups.health import group_listing
    from wpfarm_assets.backups.retired import site_or_retired
    from wpfarm_assets.backups.verify import record_refusal, verify_backup

    store = store_of(config)
    _, retired = site_or_retired(config, store, args.site)
    if retired:
        print(f"{args.site} is retired (not in the farm configuration): its backups are kept "
              f"{config.retention.retired_days} days after it left (wpfarm status)")
    entry = group_listing(list(store.list(site_root(args.site)))).get(args.site)
    now = datetime.now(timezone.utc)
    bad = 0
    print("KIND   STAMP              STORED BYTES  STATE     DETAIL")
    for kind in KINDS:
        keys = entry.backups[kind] if entry else []
        _, future = split_future(keys, now)
        for key in reversed(keys):
            stored, manifest = entry.objects.get(key.data_key), None
            if key in future:
                state, detail = "FUTURE", "stamped ahead of this machine's clock: never chosen"
            else:
                manifest, detail = verify_backup(store, key, listed_size=stored.size if stored else None, read=args.verify,
                                                 snapshots=snapshot_ids(entry.objects, args.site))
                if detail and args.verify:
                    record_refusal(store, key, detail)
                state = "REFUSED" if detail or key in entry.refused else "ok"
                detail = detail or ("refused earlier: " + store.get_bytes(key.refusal_key).decode(errors="replace")
                                    if key in entry.refused else "snapshot in the repository" if manifest.is_snapshot
                                    else "sha256 verified" if args.verify else "size matches")
            bad += state != "ok"
            size = f"{stored.size:,}" if stored else f"+{manifest.stored_bytes:,}" if manifest and manifest.is_snapshot else "-"
            print(f"{kind:5}  {key.stamp}  {size:>12}  {state:8}  {detail}")
    print(f"\n{sum(len(entry.backups[k]) for k in KINDS) if entry else 0} restore points, {bad} not ok")
    return 1 if bad else 0


def files(args: argparse.Namespace, config: FarmConfig) -> int:
    """Browse (`ls`) or read (`cat`) a files backup without restoring anything: the newest, or the
    one stamped --at. `cat` writes the file's bytes, nothing else, to stdout (for a pipe)."""
    from wpfarm_assets.backups.restore import RestoreError, choose_backup, validate_member_path
    from wpfarm_assets.backups.retired import site_or_retired

    object_store = object_store_of(config)
    store = object_store.store()
    site, _ = site_or_retired(config, store, args.site)
    content = Path(site.content_path).name
    path = validate_member_path(args.path, content) if args.path else ""
    if args.at:
        parse_at(args.at)
    repository = object_store.repository(site.name)
    key, manifest, _ = choose_backup(store, site.name, "files", None, at=args.at, repository=repository)
    if not manifest.is_snapshot:
        raise RestoreError(f"{key.stamp} is an older tar archive: browse it by restoring it "
                           "(wpfarm restore SITE --kind files --at STAMP --path PART --to-path DIR)")
    entries = repository.ls(manifest.snapshot_id, path)
    if not entries:
        raise RestoreError(f"{args.path} is not in files backup {key.stamp} of {site.name}")
    if args.action == "cat":
        itself = [e for e in entries if e["path"] == "/" + path]  # a folder's listing is of what is in it
        if not itself or itself[0]["type"] != "file":
            kind = f"a {itself[0]['type']}" if itself else "a folder"
            raise RestoreError(f"{args.path} is {kind} in files backup {key.stamp}: `cat` reads a file (`ls` it)")
        repository.dump(manifest.snapshot_id, path, sys.stdout.buffer.write)
        sys.stdout.buffer.flush()
        return 0
    print(f"# {site.name} files backup {key.stamp} (snapshot {manifest.snapshot_id[:8]}): /{path}", file=sys.stderr)
    for e in sorted(entries, key=lambda e: (e["type"] != "dir", e["name"])):
        size = "-" if e["type"] == "dir" else f"{e.get('size', 0):,}"
        print(f"{e['type']:7} {size:>15}  {e.get('mtime', '')[:19].replace('T', ' ')}  {e['path'].lstrip('/')}"
              + ("/" if e["type"] == "dir" else ""))
    return 0


def parse_at(text: str):
    try:
        return parse_stamp(text)
    except ValueError:
        raise ConfigError(f"--at {text!r}: use a backup's stamp, yyyymmddThhmmssZ (`wpfarm backups SITE`)") from None


def demo(args: argparse.Namespace) -> int:
    from resources.mariadb import MariaDB
    from resources.ssh import LocalRunner
    from wpfarm_assets.backups.verify import tree_digest
    from wpfarm_assets.demo import DemoSize, make_demo_farm, make_gpg_key

    workdir = Path(args.workdir).resolve()
    gnupg = workdir / "gnupg"
    fingerprint = make_gpg_key(gnupg)
    password_hint = ""
    if not os.environ.get("WPFARM_RESTIC_PASSWORD"):  # the demo's own file store password, kept beside it
        password_file = workdir / "restic-password"
        if not password_file.exists():
            password_file.touch(mode=0o600)
            password_file.write_text(secrets.token_urlsafe(32))
        os.environ["WPFARM_RESTIC_PASSWORD"] = password_file.read_text().strip()
        print(f"file store password: {password_file} (export WPFARM_RESTIC_PASSWORD=$(cat {password_file}))")
        password_hint = f"WPFARM_RESTIC_PASSWORD=$(cat {password_file}) "
    db = MariaDB(LocalRunner(), args.db_host, args.db_port, args.db_user, os.environ.get("WPFARM_DB_PASSWORD"))
    print(f"building {args.sites} demo sites in {workdir} ...")
    path = make_demo_farm(workdir, db, sites=args.sites, gpg_recipient=fingerprint,
                          target=f"file://{workdir / 'backups'}", gpg_home=str(gnupg), size=DemoSize(),
                          prefix=args.prefix)
    config = load_config(path)
    print(f"farm configuration: {path}")
    # As on a farm: the infrastructure checked, the sites provisioned (users, folders), then backed
    # up (retention follows).
    inst = instance()
    order = sync_partitions(inst, config)
    infrastructure = run_job("check_infrastructure", config, inst).success
    names = [s.name for s in config.sites]  # the demo farm's (the instance may hold others' partitions)
    if not run_over_sites("provision_sites", names, order, config, inst) or backup([], config) != 0:
        return 1
    site = config.sites[len(config.sites) // 2]
    scratch_db, scratch_dir = f"wp_{args.prefix}_restore_check", workdir / "restore-check"
    shutil.rmtree(scratch_dir, ignore_errors=True)
    db.drop_database(scratch_db)
    ns = parser().parse_args(["restore", site.name, "--to-database", scratch_db, "--to-path", str(scratch_dir),
                              "--gnupg-home", str(gnupg)])
    if restore(ns, config) != 0:
        return 1
    source_sums, restored_sums = db.checksums(site.database), db.checksums(scratch_db)
    source_tree, restored_tree = tree_digest(Path(site.content_path).parent), tree_digest(scratch_dir)
    tables_equal = source_sums == restored_sums and bool(source_sums)
    files_equal = source_tree == restored_tree
    print(f"\n{site.name}: {len(source_sums)} tables, per-table checksums "
          f"{'EQUAL' if tables_equal else 'DIFFER'} ({site.database} vs {scratch_db})")
    print(f"{site.name}: {source_tree[1]} files, tree sha256 {source_tree[0][:16]}… "
          f"{'EQUAL' if files_equal else 'DIFFER'} (vs {restored_tree[0][:16]}… in {scratch_dir})")
    print("\nrestore drills (every site's newest backups restored into scratch space and proven):")
    drilled = drill([], config) == 0
    print("\nthe integrity check the daily schedule runs (so that the UI opens on a farm with history):")
    checked = run_job("verify_backups", config, inst).success
    print("\npoint-in-time recovery (a MariaDB of the demo's own that writes binary logs, in "
          f"{workdir / 'pitr'}):")
    recovered = demo_pitr(workdir / "pitr", str(gnupg), fingerprint, args.prefix)
    print(f"\nweb UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} WPFARM_CONFIG={path} {password_hint}"
          f"{Path(sys.executable).parent / 'dagster'} dev -m wpfarm_assets.definitions")
    return 0 if tables_equal and files_equal and drilled and checked and infrastructure and recovered else 1


def demo_pitr(workdir: Path, gnupg: str, fingerprint: str, prefix: str) -> bool:
    """One site on a server with binary logs: its nightly dump, an order, then a mistake; the
    archive; the site restored to the second between them. Prints its state at each step."""
    import time

    import yaml

    from wpfarm_assets.demo import DemoSize, binlog_server, create_site_content, create_site_database

    name, database = f"pitr.{prefix}.wpfarm.test", f"wp_{prefix}_pitr"
    with binlog_server(workdir / "mariadb") as db:
        create_site_database(db, database, name, DemoSize(), seed=7)
        content = create_site_content(workdir / "sites" / name, name, DemoSize(posts=10, uploads=1), seed=7)
        path = workdir / "farm.yaml"
        path.write_text(yaml.safe_dump({
            "database": {"host": db.host, "port": db.port, "user": db.user, "pitr": True},
            "backup": {"target": f"file://{workdir / 'backups'}", "gpg_recipient": fingerprint, "gpg_home": gnupg},
            "drill": {"scratch_root": str(workdir / "drills"), "gnupg_home": gnupg},
            "sites": [{"name": name, "database": database, "content_path": str(content)}]}, sort_keys=False))
        config = load_config(path)

        def state(when: str) -> None:
            posts, newest = db.query(f"SELECT COUNT(*), (SELECT post_title FROM {database}.wp_posts WHERE post_type = "
                                     f"'post' ORDER BY ID DESC LIMIT 1) FROM {database}.wp_posts WHERE post_type = 'post'")[0]
            print(f"  {when}: {posts} posts, the newest {newest!r}")

        if backup([], config) != 0 or binlogs(config) != 0:  # last night's dump, and the archive so far
            return False
        db.query(f"INSERT INTO {database}.wp_posts (post_title, post_content, post_excerpt, to_ping, pinged, "
                 "post_content_filtered, post_type) VALUES ('Order #1001', 'two mugs', '', '', '', '', 'post')")
        time.sleep(1.1)
        moment = datetime.now(timezone.utc).replace(microsecond=0)
        at_moment = db.checksums(database)
        state(f"{moment:%H:%M:%S}, after a new order")
        time.sleep(1.1)
        db.query(f"DELETE FROM {database}.wp_posts WHERE post_type = 'post'")  # a plugin gone wrong
        state("then a plugin deletes every post")
        ns = parser().parse_args(["restore", name, "--kind", "db", "--time", moment.isoformat(), "--gnupg-home", gnupg])
        if binlogs(config) != 0 or restore(ns, config) != 0:
            return False
        state(f"restored to {moment:%H:%M:%S}")
        equal = db.checksums(database) == at_moment
        # Its partition goes again: the UI opens on the demo farm, whose inventory does not list it.
        instance().delete_dynamic_partition("sites", name)
        print(f"{name}: per-table checksums {'EQUAL' if equal else 'DIFFER'} to the moment before the mistake")
        return equal


def site_create(args: argparse.Namespace, config: FarmConfig) -> int:
    """Add the site to the inventory (unless it is there), provision it, back it up: three steps
    that each show in the UI (the partition, then site_provisioning, database_dump and file_archive)."""
    from wpfarm_assets.provisioning.plans import default_database_name

    if not any(s.name == args.name for s in config.sites):
        site = Site(name=args.name, database=args.database or default_database_name(args.name),
                    content_path=args.content_path or f"{config.provisioning.sites_root}/{args.name}/wp-content")
        add_site_to_file(config.source, site)
        print(f"{site.name}: added to {config.source} (database {site.database}, content {site.content_path})")
        config = config.reread()
    inst = instance()
    sync_partitions(inst, config)
    tags = run_tags([args.name])
    if not run_job("provision_sites", config, inst, args.name, tags=tags).success:
        return 1
    return 0 if run_job("back_up_sites", config, inst, args.name, tags=tags).success else 1


def provision(args: argparse.Namespace, config: FarmConfig) -> int:
    """Plan the selected steps of provision_farm (all by default); change the farm only with --apply."""
    from wpfarm_assets.provisioning.jobs import provision_farm

    steps = args.step or provision_farm.graph.node_names()
    ops = {step: {"config": {"dry_run": not args.apply}} for step in steps}
    if "provision_droplets" in ops:
        ops["provision_droplets"]["config"]["destroy_extra"] = args.destroy_extra
    result = run_job("provision_farm", config, instance(), op_selection=steps, run_config={"ops": ops})
    for event in result.all_events:
        if event.is_successful_output:
            metadata = event.step_output_data.metadata
            plan = metadata["plan"].value.records
            print(f"{event.step_key}: {metadata['changes'].value or 'no'} change(s){'' if args.apply else ' (plan only)'}")
            for row in plan:
                print(f"  {row.data['action']:10} {row.data['target']}: {row.data['detail']}")
    return 0 if result.success else 1


def demo_prefix(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{1,20}", text):
        raise argparse.ArgumentTypeError("use 1-20 lower-case letters and digits")
    return text


def parser() -> argparse.ArgumentParser:
    from wpfarm_assets.provisioning.jobs import provision_farm

    p = argparse.ArgumentParser(prog="wpfarm", description="Back up, restore and watch a WordPress farm.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup", help="back up sites now (all when none are named)")
    b.add_argument("sites", nargs="*", metavar="SITE")
    b.add_argument("--failed", action="store_true", help="retry exactly the sites whose last backup failed")
    r = sub.add_parser("restore", help="restore a site from its newest (or a given day's) backup")
    r.add_argument("site", metavar="SITE")
    r.add_argument("--date", help="YYYY-MM-DD (UTC): the newest good backup of that day")
    r.add_argument("--at", help="yyyymmddThhmmssZ: exactly this backup (see `wpfarm backups SITE`)")
    r.add_argument("--time", help="2026-12-07T14:32:05Z (UTC): the database as it was at that second (the dump "
                   "before it and the archived binary logs up to it); files: the newest backup before it")
    r.add_argument("--to-database", help="restore into this database instead of the site's own")
    r.add_argument("--to-path", help="extract wp-content (and wp-config.php) under this directory instead")
    r.add_argument("--path", help="restore only this part of the files, e.g. wp-content/uploads/2026 (implies --kind files)")
    r.add_argument("--table", action="append", metavar="NAME",
                   help="restore only this table of the database (repeatable); every other table is untouched")
    r.add_argument("--kind", choices=["all", "db", "files"], default=None,
                   help="default: all (files with --path, db with --table)")
    r.add_argument("--force", action="store_true",
                   help="restore even into another site's database or folder, or a system directory")
    r.add_argument("--gnupg-home", default=os.environ.get("GNUPGHOME"), help="keyring with the farm's private key")
    r.add_argument("--no-checkpoint", dest="checkpoint", action="store_false",
                   help="in place, do not first back up what the restore overwrites (by default it does: the undo)")
    r.add_argument("--from", dest="source", choices=["primary", "offsite"], default="primary",
                   help="offsite: from the off-site copy (backup.offsite), as it was at --as-of")
    r.add_argument("--as-of", help="with --from offsite: 2026-12-07T14:32:05Z (UTC); what was deleted or overwritten "
                                   "on the copy after then is ignored (default: now)")
    off = sub.add_parser("offsite", help="the off-site copy").add_subparsers(dest="offsite_command", required=True)
    oc = off.add_parser("copy", help="copy new backups of sites (all when none) to the off-site target now")
    oc.add_argument("sites", nargs="*", metavar="SITE")
    orc = off.add_parser("recover", help="rebuild a backup target from the off-site copy as it was at --as-of")
    orc.add_argument("--as-of", required=True, help="2026-12-07T14:32:05Z (UTC): a time before the incident")
    orc.add_argument("--to", required=True, metavar="TARGET",
                     help="s3://bucket[/prefix] or file:///path; the keys of backup.target (SPACES_*) are used")
    orc.add_argument("--site", action="append", metavar="SITE", help="only this site (repeatable; default: all)")
    dr = sub.add_parser("drill", help="restore drills now: newest backups restored into scratch space and proven")
    dr.add_argument("sites", nargs="*", metavar="SITE")
    fl = sub.add_parser("files", help="browse (ls) or read (cat) a files backup without restoring it")
    fl.add_argument("site", metavar="SITE")
    fl.add_argument("action", choices=["ls", "cat"])
    fl.add_argument("path", nargs="?", metavar="PATH", help="wp-content/… or wp-config.php (ls: default the top)")
    fl.add_argument("--at", help="yyyymmddThhmmssZ: this files backup (default: the newest)")
    cl = sub.add_parser("clone", help="a staging clone of a site at a new address (or --delete one)")
    cl.add_argument("site", metavar="SITE", help="the site to clone (with --delete: the clone to remove)")
    cl.add_argument("name", nargs="?", metavar="NEW_NAME", help="the clone's name and address")
    cl.add_argument("--delete", action="store_true", help="remove the clone SITE: database, folder, record")
    cl.add_argument("--date", help="YYYY-MM-DD (UTC): from the newest good backups of that day")
    cl.add_argument("--at", help="yyyymmddThhmmssZ: from this database backup")
    cl.add_argument("--database", type=identifier, help="default: wp_<name with _ for dots and dashes>_<digest>")
    cl.add_argument("--content-path", type=absolute_path, help="default: <provisioning.sites_root>/NEW_NAME/wp-content")
    cl.add_argument("--url", help="the clone's address (default http(s)://NEW_NAME, the site's scheme)")
    cl.add_argument("--gnupg-home", default=os.environ.get("GNUPGHOME"), help="keyring with the farm's private key")
    ex = sub.add_parser("export", help="one zip of a site's backup for its owner: database.sql, wp-content, "
                                       "wp-config.php (secrets blanked), README.txt; its sha256 printed")
    ex.add_argument("site", metavar="SITE")
    ex.add_argument("--to", required=True, metavar="FILE", help="the zip to write (it must not exist)")
    ex.add_argument("--at", help="yyyymmddThhmmssZ: this database backup, with the newest files backup before it")
    ex.add_argument("--include-secrets", action="store_true",
                    help="keep wp-config.php's database password, keys and salts (default: blanked)")
    ex.add_argument("--gnupg-home", default=os.environ.get("GNUPGHOME"), help="keyring with the farm's private key")
    sub.add_parser("status", help="the newest backup of every site and kind, and its last drill: age and state")
    sub.add_parser("binlogs", help="archive the binary logs now (what the schedule runs every few minutes)")
    bk = sub.add_parser("backups", help="every restore point of a site, with its verification state")
    bk.add_argument("site", metavar="SITE")
    bk.add_argument("--verify", action="store_true", help="read every backup whole and compare its sha256")
    d = sub.add_parser("demo", help="build a demo farm on the local MariaDB, back it up, restore one site")
    d.add_argument("--sites", type=int, default=20)
    d.add_argument("--workdir", default=".demo")
    d.add_argument("--prefix", default="demo", type=demo_prefix, help="names: wp_PREFIX_001, site001.PREFIX.wpfarm.test")
    d.add_argument("--db-host", default="127.0.0.1")
    d.add_argument("--db-port", type=int, default=3306)
    d.add_argument("--db-user", default="root")
    site = sub.add_parser("site", help="manage sites").add_subparsers(dest="site_command", required=True)
    c = site.add_parser("create", help="add a site to the inventory, provision it and take its first backup")
    c.add_argument("name", metavar="NAME", type=site_name)
    c.add_argument("--database", type=identifier, help="default: wp_<name with _ for dots and dashes>_<digest>")
    c.add_argument("--content-path", type=absolute_path, help="default: <provisioning.sites_root>/NAME/wp-content")
    pr = sub.add_parser("provision", help="plan (or --apply) the farm's provisioning steps")
    pr.add_argument("--apply", action="store_true", help="change the farm (default: show the plan only)")
    pr.add_argument("--step", action="append", choices=provision_farm.graph.node_names(), help="only these steps (repeatable)")
    pr.add_argument("--destroy-extra", action="store_true", help="destroy droplets the topology does not have")
    return p


def _argument(validate):
    def parse(text: str) -> str:
        try:
            return validate(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


site_name, identifier, absolute_path = (_argument(validate_site_name), _argument(validate_identifier),
                                        _argument(validate_absolute_path))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args)
        config = load_config()
        if args.command == "status":
            return status(config)
        if args.command == "binlogs":
            return binlogs(config)
        if args.command == "drill":
            return drill(args.sites, config)
        if args.command == "backups":
            return backups(args, config)
        if args.command == "files":
            if args.action == "cat" and not args.path:
                raise ConfigError("files cat needs a PATH: a file of the backup, e.g. wp-config.php")
            return files(args, config)
        if args.command == "site":
            return site_create(args, config)
        if args.command == "provision":
            return provision(args, config)
        if args.command == "offsite":
            return offsite(args, config)
        if args.command == "export":
            return export(args, config)
        if args.command == "clone":
            return clone(args, config)
        return backup(args.sites, config, args.failed) if args.command == "backup" else restore(args, config)
    except WpfarmError as exc:  # meant for the operator: one line; anything else is a bug and keeps its traceback
        print(f"wpfarm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wpfarm: interrupted; the current run is marked failed", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `wpfarm status | head`: the reader left; no traceback, no error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
