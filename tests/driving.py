"""Driving Dagster from the tests the way the daemon and the launchpad do."""

import dagster as dg

from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_definitions, build_resources


class Daemon:
    """What the sensor daemon does with a tick: evaluate with the cursor, apply the partition
    requests, launch the requested runs (here in process, so the test can look at them)."""

    def __init__(self, sensor: str):
        self.sensor, self.cursor, self.job = sensor, None, None
        self.run_keys: list[str] = []
        self.instance = dg.DagsterInstance.get()

    def tick(self) -> list[dg.RunRequest]:
        config = load_config()
        defs = build_definitions(config)
        sensor = defs.resolve_sensor_def(self.sensor)
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor, sensor_name=self.sensor,
                                     definitions=defs, resources=build_resources(config)) as context:
            data = sensor.evaluate_tick(context)
        self.cursor, self.job = data.cursor, sensor.job_name
        for request in data.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        fresh = [r for r in data.run_requests if r.run_key not in self.run_keys]
        self.run_keys += [r.run_key for r in fresh]
        return fresh

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        defs = build_definitions(load_config())
        return defs.resolve_job_def(request.job_name or self.job).execute_in_process(
            instance=self.instance, tags=request.tags, asset_selection=request.asset_selection, raise_on_error=False)


def selected(request: dg.RunRequest) -> set[str]:
    return {key.to_user_string() for key in request.asset_selection}


def provision(steps: list[str], dry_run: bool = False, **droplets_config) -> dg.ExecuteInProcessResult:
    """provision_farm with only `steps` selected, as from the launchpad; it must succeed."""
    ops = {step: {"config": {"dry_run": dry_run}} for step in steps}
    if "provision_droplets" in ops:
        ops["provision_droplets"]["config"].update(droplets_config)
    job = build_definitions(load_config()).resolve_job_def("provision_farm")
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), op_selection=steps, run_config={"ops": ops},
                                    raise_on_error=False)
    assert result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    return result


def plan_of(result, step: str) -> list[tuple[str, str]]:
    event = next(e for e in result.all_events if e.is_successful_output and e.step_key == step)
    return [(r.data["action"], r.data["target"]) for r in event.step_output_data.metadata["plan"].value.records]
