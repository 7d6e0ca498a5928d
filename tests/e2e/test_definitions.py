"""The whole Definitions object, the inventory sensor, and the CLI, driven through Dagster."""

import dagster as dg

from sensors.site_inventory import site_inventory_sensor
from wpfarm_assets.config import load_config
from wpfarm_assets.definitions import build_definitions


def test_definitions_hold_the_site_assets_jobs_and_sensor(make_farm):
    make_farm(1)
    defs = build_definitions(load_config())
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {"database_dump", "file_archive"}
    for key in ("database_dump", "file_archive"):
        node = graph.get(dg.AssetKey(key))
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == "sites"
    assert defs.resolve_job_def("back_up_sites") and defs.resolve_job_def("restore_site")
    assert defs.resolve_sensor_def("site_inventory_sensor")
    assert set(defs.resources) >= {"mariadb", "database_node", "storage_node", "object_store", "gpg"}


def test_inventory_sensor_adds_new_sites_and_requests_one_first_backup_run(make_farm, dagster_home):
    farm = make_farm(3)
    names = [s["name"] for s in farm.sites]
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", [names[0], "gone.example.com"])
    defs = build_definitions(load_config())

    result = site_inventory_sensor(dg.build_sensor_context(instance=instance, definitions=defs))

    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert [list(r.partition_keys) for r in adds] == [names[1:]]
    assert [list(r.partition_keys) for r in deletes] == [["gone.example.com"]]
    (run,) = result.run_requests
    assert run.tags["dagster/asset_partition_range_start"] == names[1]
    assert run.tags["dagster/asset_partition_range_end"] == names[2]


def test_inventory_sensor_is_quiet_when_partitions_match(make_farm, dagster_home):
    farm = make_farm(2)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", [s["name"] for s in farm.sites])
    result = site_inventory_sensor(dg.build_sensor_context(instance=instance))
    assert result.run_requests == [] and result.dynamic_partitions_requests == []
