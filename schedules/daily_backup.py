"""The nightly backup: every site, in runs of `backup.sites_per_run` sites (retention follows each run)."""

import dagster as dg

from wpfarm_assets.core.batches import site_runs
from wpfarm_assets.partitions import run_tags, sites


def build_daily_backup_schedule(cron: str, sites_per_run: int) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_backup_schedule",
        job_name="back_up_sites",
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Back up every site ({sites_per_run} sites a run); retention follows each run. A retired "
                    "site's partition is in the runs' ranges and passed over in them.",
    )
    def daily_backup_schedule(context: dg.ScheduleEvaluationContext):
        names = context.instance.get_dynamic_partitions(sites.name)
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        if not names:
            return dg.SkipReason("no sites yet: the site_inventory_sensor adds them from farm.yaml")
        return [
            dg.RunRequest(run_key=f"{day}:{run[0]}", tags=run_tags(run)) for run in site_runs(names, names, sites_per_run)
        ]

    return daily_backup_schedule
