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
        required_resource_keys={"farm"},
        description=f"Back up every site ({sites_per_run} sites a run); retention follows each run. Retired "
                    "sites (partitions of sites no longer in the configuration) are not backed up.",
    )
    def daily_backup_schedule(context: dg.ScheduleEvaluationContext):
        configured = {s.name for s in context.resources.farm.sites}
        names = [n for n in context.instance.get_dynamic_partitions(sites.name) if n in configured]
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        if not names:
            return dg.SkipReason("no sites yet: the site_inventory_sensor adds them from farm.yaml")
        return [
            dg.RunRequest(run_key=f"{day}:{run[0]}", tags=run_tags(run))
            for run in site_runs(names, context.instance.get_dynamic_partitions(sites.name), sites_per_run)
        ]

    return daily_backup_schedule
