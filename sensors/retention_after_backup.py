"""Retention follows every backup run, for the same sites, whether or not some of them failed.
(`wpfarm backup` applies retention itself, so that it works without the daemon; its runs carry
RETENTION_BY_CLI and are passed over here.)

(Retention is safe for a site whose backup just failed: it never deletes the newest backup and
refuses to run when that backup fails verification.)
"""

import dagster as dg

from wpfarm_assets.backups.jobs import apply_retention_job, back_up_sites_job
from wpfarm_assets.partitions import RANGE_END, RANGE_START, partition_range_tags

RETENTION_BY_CLI = "wpfarm/retention"  # tag value "cli": the command applies retention after the run


def retention_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    tags = run.tags
    if tags.get(RETENTION_BY_CLI) == "cli":
        return dg.SkipReason(f"run {run.run_id} was started by `wpfarm backup`, which applies retention itself")
    if RANGE_START in tags:
        return dg.RunRequest(run_key=f"retention-after:{run.run_id}", tags=partition_range_tags(tags[RANGE_START], tags[RANGE_END]))
    if tags.get("dagster/partition"):
        return dg.RunRequest(run_key=f"retention-after:{run.run_id}", partition_key=tags["dagster/partition"])
    return dg.SkipReason(f"run {run.run_id} names no sites")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[back_up_sites_job],
    request_job=apply_retention_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each successful back_up_sites run: apply_retention for the same sites.",
)
def retention_after_backup(context: dg.RunStatusSensorContext):
    return retention_request(context.dagster_run)


@dg.run_failure_sensor(
    monitored_jobs=[back_up_sites_job],
    request_job=apply_retention_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each failed back_up_sites run: apply_retention for the same sites (those that succeeded "
                "got new backups; retention never deletes a site's newest good one).",
)
def retention_after_failed_backup(context: dg.RunFailureSensorContext):
    return retention_request(context.dagster_run)
