"""Hourly: the backup inventory and its age and integrity checks, which fire and resolve alerts."""

import dagster as dg

backup_health_schedule = dg.ScheduleDefinition(
    name="backup_health_schedule",
    job_name="check_backup_health",
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
