"""Retention follows every backup run, for the same sites, whether or not some of them failed.
Runs of back_up_sites and runs launched from the UI (a backfill runs as an asset job) that
selected a backup asset. The off-site copy (when backup.offsite is set) follows every retention
run the same way, so that it copies what retention kept and never races a prune. (`wpfarm backup`
applies retention and copies itself, so that it works without the daemon; its runs carry
RETENTION_BY_CLI and are passed over here, unless re-executed from the UI.)

(Retention is safe for a site whose backup just failed: it never deletes the newest backup and
refuses to run when that backup fails verification.)
"""

import dagster as dg

from wpfarm_assets.backups.jobs import apply_retention_job, back_up_sites_job, copy_offsite_job
from wpfarm_assets.partitions import RANGE_END, RANGE_START, SITES_TAG

RETENTION_BY_CLI = "wpfarm/retention"  # tag value "cli": the command applies retention (and copies) after the run


BACKUPS = {dg.AssetKey("database_dump"), dg.AssetKey("file_archive")}
RETENTION = {dg.AssetKey("retention")}


def follow_up(run: dg.DagsterRun, after_job: str, after_assets: set[dg.AssetKey], what: str
              ) -> dg.RunRequest | dg.SkipReason:
    """A run of the sensor's job for the sites of `run`, if it ran `after_job` or `after_assets`."""
    tags = run.tags
    if run.job_name != after_job and not (run.asset_selection and run.asset_selection & after_assets):
        return dg.SkipReason(f"run {run.run_id} is not one {what} follows")
    if tags.get(RETENTION_BY_CLI) == "cli" and run.parent_run_id is None:  # a re-execution copies the tag
        return dg.SkipReason(f"run {run.run_id} was started by `wpfarm backup`, which does {what} itself")
    key = f"{what}-after:{run.run_id}"
    if RANGE_START in tags:
        return dg.RunRequest(run_key=key, tags={k: tags[k] for k in (RANGE_START, RANGE_END, SITES_TAG) if k in tags})
    if tags.get("dagster/partition"):
        return dg.RunRequest(run_key=key, partition_key=tags["dagster/partition"])
    return dg.SkipReason(f"run {run.run_id} names no sites")


def retention_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    return follow_up(run, back_up_sites_job.name, BACKUPS, "retention")


def offsite_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    return follow_up(run, apply_retention_job.name, RETENTION, "offsite")


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


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=copy_offsite_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each retention run: copy_offsite for the same sites (what retention kept, after its prune).",
)
def offsite_after_retention(context: dg.RunStatusSensorContext):
    return offsite_request(context.dagster_run)


@dg.run_failure_sensor(
    request_job=copy_offsite_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each failed retention run: copy_offsite for the same sites (their new backups are there).",
)
def offsite_after_failed_retention(context: dg.RunFailureSensorContext):
    return offsite_request(context.dagster_run)
