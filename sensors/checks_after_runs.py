"""The inventory and its checks follow every run that changes what they judge: after each retention
run (one follows every backup run), each off-site copy run and each drill run, successful or not, check_backup_health runs,
so a check is never older than the newest backup, deletion or drill (the hourly schedule stays, for
time passing: a backup that does not come turns stale without any run).

`wpfarm` commands run the checks themselves (without the daemon); their runs, tagged with the
command's process, are passed over here unless re-executed from the UI.
"""

import dagster as dg

from wpfarm_assets.backups.jobs import apply_retention_job, check_backup_health_job, copy_offsite_job, drill_sites_job
from wpfarm_assets.dagster_storage import PROCESS_TAG

JUDGED = (apply_retention_job, drill_sites_job, copy_offsite_job)


def checks_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    if PROCESS_TAG in run.tags and run.parent_run_id is None:  # a re-execution copies the tag
        return dg.SkipReason(f"run {run.run_id} was started by a `wpfarm` command, which runs the checks itself")
    return dg.RunRequest(run_key=f"checks-after:{run.run_id}", tags={"wpfarm/after": run.run_id})


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=list(JUDGED),
                      request_job=check_backup_health_job, default_status=dg.DefaultSensorStatus.RUNNING,
                      description="After each retention, off-site copy or drill run that succeeded: check_backup_health.")
def checks_after_run(context: dg.RunStatusSensorContext):
    return checks_request(context.dagster_run)


@dg.run_failure_sensor(monitored_jobs=list(JUDGED), request_job=check_backup_health_job,
                       default_status=dg.DefaultSensorStatus.RUNNING,
                       description="After each retention, off-site copy or drill run that failed: check_backup_health (the sites "
                                   "that were done changed; the checks say which are not).")
def checks_after_failed_run(context: dg.RunFailureSensorContext):
    return checks_request(context.dagster_run)
