"""How every command runs its work: the instance, the code location's jobs run in this process (and
recorded as the daemon's would be), the stores outside a run, the sites a command covers."""

from __future__ import annotations

import os
import re
import shutil
import sys
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
)
from wpfarm_assets.core.keys import parse_stamp
from wpfarm_assets.dagster_storage import PROCESS_TAG, fail_dead_runs, this_process
from wpfarm_assets.partitions import run_tags

REPO = Path(__file__).resolve().parents[2]


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
    from wpfarm_assets.definitions import initialized

    return initialized(config, "object_store")


def offsite_store_of(config: FarmConfig):
    """A function opening the off-site copy (backup.offsite), outside a run."""
    from wpfarm_assets.definitions import initialized

    return initialized(config, "offsite").store


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


def parse_date(text: str):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--date {text!r}: use YYYY-MM-DD (a UTC day)") from None


def parse_at(text: str):
    try:
        return parse_stamp(text)
    except ValueError:
        raise ConfigError(f"--at {text!r}: use a backup's stamp, yyyymmddThhmmssZ (`wpfarm backups SITE`)") from None
