"""Hourly: the inventory and every site's backup age. Daily, after the nightly backup: the integrity
of each site's newest backups (it re-reads them all, so once a day, not every hour). Every ten
minutes: the infrastructure (the Swarm sensor also re-checks it as soon as a node changes)."""

import dagster as dg


def running_schedule(name: str, job_name: str, cron: str, description: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(name=name, job_name=job_name, cron_schedule=cron, execution_timezone="UTC",
                                 default_status=dg.DefaultScheduleStatus.RUNNING, description=description)


backup_health_schedule = running_schedule(
    "backup_health_schedule", "check_backup_health", "15 * * * *",
    "Hourly: the backup inventory, every site's backup age and last restore drill (alerts fire and resolve).")
verify_backups_schedule = running_schedule(
    "verify_backups_schedule", "verify_backups", "30 6 * * *",
    "Daily: re-read every site's newest backups against their manifests; restic check of 1/30 of each repository.")
infrastructure_schedule = running_schedule(
    "infrastructure_schedule", "check_infrastructure", "*/10 * * * *",
    "Every ten minutes: check every configured part of the infrastructure group (droplets, Swarm nodes, tiers); their checks say what is wrong.")


def build_binlog_schedule(every_minutes: int) -> dg.ScheduleDefinition:
    return running_schedule(
        "binlog_archive_schedule", "archive_binlogs", f"*/{every_minutes} * * * *",
        f"Every {every_minutes} minutes (database.binlog_every_minutes): archive the binary logs written since the "
        "last run; the archive's age is the farm's recovery point (RPO).")
