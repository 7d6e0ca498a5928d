"""Hourly: the inventory and every site's backup age. Daily, after the nightly backup: the integrity
of each site's newest backups (it re-reads them all, so once a day, not every hour). Every ten
minutes: the infrastructure (the Swarm sensor also re-checks it as soon as a node changes)."""

import dagster as dg

backup_health_schedule = dg.ScheduleDefinition(
    name="backup_health_schedule",
    job_name="check_backup_health",
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

verify_backups_schedule = dg.ScheduleDefinition(
    name="verify_backups_schedule",
    job_name="verify_backups",
    cron_schedule="30 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

infrastructure_schedule = dg.ScheduleDefinition(
    name="infrastructure_schedule",
    job_name="check_infrastructure",
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
