"""A failed run alerts too (warning), with a link to it; the alert lapses unless runs keep failing.
Not a `wpfarm restore` that failed or was refused: the operator who typed it has the reason."""

import dagster as dg

from resources.alerts import AlertmanagerResource
from wpfarm_assets.core.config import FarmConfig
from wpfarm_assets.dagster_storage import PROCESS_TAG


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, monitor_all_code_locations=False,
                       description="Every failed run: a warning alert (WpfarmRunFailed) with the run's link.")
def run_failure_alert(context: dg.RunFailureSensorContext, farm: dg.ResourceParam[FarmConfig],
                      alertmanager: AlertmanagerResource) -> None:
    run = context.dagster_run
    if run.job_name == "restore_site" and PROCESS_TAG in run.tags:  # `wpfarm restore`: its operator saw why
        return
    link = f"{farm.alerts.dagster_url.rstrip('/')}/runs/{run.run_id}"
    message = context.failure_event.message or "run failed"
    alertmanager.fire(
        {"alertname": "WpfarmRunFailed", "job": run.job_name, "severity": "warning"},
        {"summary": message[:500], "run": link},
    )
