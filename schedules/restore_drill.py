"""The nightly restore drills: a rotating sample, so that every site is drilled at least once every
`drill.every_days`, plus `drill.extra_sites` at random; sized to the drill window when earlier
drills say how long a site takes."""

import statistics
from datetime import datetime, timedelta

import dagster as dg

from wpfarm_assets.backups.drill import last_drills, nightly_sample
from wpfarm_assets.core.batches import site_runs
from wpfarm_assets.core.config import FarmConfig
from wpfarm_assets.partitions import run_tags, sites


def tonight(farm: FarmConfig, store, night: str) -> list[str]:
    """The sites to drill on `night` (YYYY-MM-DD), from the store's drill records."""
    names = [s.name for s in farm.sites]
    last, _ = last_drills(store, names)
    rtos = [r["rto_seconds"] for r in last.values() if r.get("passed")]
    capacity = None
    if rtos:  # what the window holds at the median RTO, drill.parallelism at a time
        capacity = max(1, int(farm.drill.max_minutes * 60 * farm.drill.parallelism / max(statistics.median(rtos), 1)))
    when = {site: datetime.fromisoformat(r["started_at"]) for site, r in last.items()}
    return nightly_sample(names, when, farm.drill.every_days, farm.drill.extra_sites, night, capacity)


def build_restore_drill_schedule(cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="restore_drill_schedule",
        job_name="drill_sites",
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        required_resource_keys={"farm", "object_store"},
        description="Restore drills for tonight's sites: the ones drilled longest ago (every site within "
                    "drill.every_days) and drill.extra_sites at random, inside drill.max_minutes.",
    )
    def restore_drill_schedule(context: dg.ScheduleEvaluationContext):
        farm = context.resources.farm
        night = context.scheduled_execution_time.strftime("%Y-%m-%d")
        chosen = tonight(farm, context.resources.object_store.store(), night)
        known = context.instance.get_dynamic_partitions(sites.name)
        chosen = [s for s in chosen if s in known]
        if not chosen:
            return dg.SkipReason("no sites to drill yet: the site_inventory_sensor adds them from farm.yaml")
        ends = context.scheduled_execution_time + timedelta(minutes=farm.drill.max_minutes)
        run_config = {"ops": {"restore_drill": {"config": {"window_ends": ends.isoformat()}}}}
        return [dg.RunRequest(run_key=f"{night}:{run[0]}", tags=run_tags(run), run_config=run_config)
                for run in site_runs(chosen, known, farm.backup.sites_per_run)]

    return restore_drill_schedule
