"""Retention follows every backup run, for the same sites, whether or not some of them failed.
Runs of back_up_sites and runs launched from the UI (a backfill runs as an asset job) that
selected a backup asset. (`wpfarm backup` applies retention itself, so that it works without the
daemon; its runs carry RETENTION_BY_CLI and are passed over here, unless re-executed from the UI.)

(Retention is safe for a site whose backup just failed: it never deletes the newest backup and
refuses to run when that backup fails verification.)
"""

import dagster as dg

from wpfarm_assets.backups.jobs import apply_retention_job, back_up_sites_job
from wpfarm_assets.partitions import RANGE_END, RANGE_START, SITES_TAG

RETENTION_BY_CLI = "wpfarm/retention"  # tag value "cli": the command applies retention after the run


BACKUPS = {dg.AssetKey("database_dump"), dg.AssetKey("file_archive")}


def retention_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    tags = run.tags
    if run.job_name != back_up_sites_job.name and not (run.asset_selection and run.asset_selection & BACKUPS):
        return dg.SkipReason(f"run {run.run_id} backs nothing up")
    if tags.get(RETENTION_BY_CLI) == "cli" and run.parent_run_id is None:  # a re-execution copies the tag
        return dg.SkipReason(f"run {run.run_id} was started by `wpfarm backup`, which applies retention itself")
    if RANGE_START in tags:
        return dg.RunRequest(run_key=f"retention-after:{run.run_id}",
                             tags={k: tags[k] for k in (RANGE_START, RANGE_END, SITES_TAG) if k in tags})
    if tags.get("dagster/partition"):
        return dg.RunRequest(run_key=f"retention-after:{run.run_id}", partition_key=tags["dagster/partition"])
    return dg.SkipReason(f"run {run.run_id} names no sites")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=apply_retention_job,  # every job of this code location: UI backfills run as asset jobs
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each successful run that backed sites up (back_up_sites, or a UI launch or backfill): "
                "apply_retention for the same sites.",
)
def retention_after_backup(context: dg.RunStatusSensorContext):
    return retention_request(context.dagster_run)


@dg.run_failure_sensor(
    request_job=apply_retention_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each failed run that backed sites up: apply_retention for the same sites (those that "
                "succeeded got new backups; retention never deletes a site's newest good one).",
)
def retention_after_failed_backup(context: dg.RunFailureSensorContext):
    return retention_request(context.dagster_run)
