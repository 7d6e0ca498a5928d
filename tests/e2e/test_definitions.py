"""The whole Definitions object: assets and their lineage, jobs, schedules, sensors, resources."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = {"droplets", "swarm_nodes", "database_tier", "cache_tier", "storage_tier", "monitoring_tier"}


EVERYTHING = {"swarm": {"docker_host": "tcp://127.0.0.1:9"}, "cache": {"redis": "127.0.0.1:9"},
              "storage": {"gluster_volume": "wp-content"}, "monitoring": {"prometheus_url": "http://127.0.0.1:9"}}


def test_definitions_hold_the_site_assets_jobs_and_sensor(make_farm, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "token")
    make_farm(1, sections=EVERYTHING)  # every part configured: every part in the graph
    defs = build_definitions(load_config())
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == INFRASTRUCTURE | {
        "site_provisioning", "database_dump", "file_archive", "retention", "restore_drill", "retired_sites",
        "backup_inventory"}

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}
    # The farm's lineage: droplets → swarm_nodes → tiers → backups (with the site's provisioning) → drill → inventory.
    assert parents("swarm_nodes") == {"droplets"}
    for tier in ("database_tier", "storage_tier", "cache_tier", "monitoring_tier"):
        assert parents(tier) == {"swarm_nodes"}
    assert parents("database_dump") == {"database_tier", "site_provisioning"}
    assert parents("file_archive") == {"storage_tier", "site_provisioning"}
    assert parents("restore_drill") == set()  # judged by its due date, not "unsynced" by every nightly backup
    assert parents("backup_inventory") == {"retention", "restore_drill", "retired_sites"}
    for key in INFRASTRUCTURE:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "infrastructure" and node.partitions_def is None and node.is_materializable
    assert parents("retention") == {"database_dump", "file_archive"}
    for key in ("site_provisioning", "database_dump", "file_archive", "retention", "restore_drill"):
        node = graph.get(dg.AssetKey(key))
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == "sites"
    for job in ("back_up_sites", "apply_retention", "restore_site", "check_infrastructure", "provision_sites"):
        assert defs.resolve_job_def(job)
    assert defs.resolve_job_def("provision_farm").graph.node_names() == [
        "provision_droplets", "init_swarm", "join_nodes", "label_nodes", "create_networks", "deploy_stacks"]
    infrastructure = defs.resolve_job_def("check_infrastructure").asset_layer.selected_asset_keys
    assert {k.to_user_string() for k in infrastructure} == INFRASTRUCTURE
    for sensor in ("site_inventory_sensor", "swarm_node_sensor", "retention_after_backup", "retention_after_failed_backup",
                   "checks_after_run", "checks_after_failed_run"):
        assert defs.resolve_sensor_def(sensor)
    assert set(defs.resources) >= {"mariadb", "database_node", "storage_node", "object_store", "gpg",
                                   "digitalocean", "swarm", "redis", "alertmanager"}


def test_dagster_cli_validates_the_code_location_and_lists_what_is_upstream_of_the_site_assets(dagster_home):
    dagster = [str(Path(sys.executable).parent / "dagster")]
    # The example farm (every tier configured) with a DigitalOcean token: the whole lineage, as an operator types it.
    env = {**os.environ, "WPFARM_CONFIG": str(ROOT / "configs" / "farm.yaml"), "DIGITALOCEAN_TOKEN": "token"}
    lineage = (("database_dump", "database_tier"), ("file_archive", "storage_tier"))
    commands = [([*dagster, "definitions", "validate", "-m", "wpfarm_assets.definitions"], None)] + [
        ([*dagster, "asset", "list", "-m", "wpfarm_assets.definitions", "--select", f"+key:{asset}"], env)
        for asset, _ in lineage]
    # The three commands at once (each is mostly Python starting up), each checked as subprocess.run(check=True) would.
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_)
             for argv, env_ in commands]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (proc.args, out, err)
    for (asset, tier), (out, _) in zip(lineage, outputs[1:], strict=True):
        assert sorted(out.split()) == sorted([asset, "droplets", "swarm_nodes", tier, "site_provisioning"])


def test_nightly_schedule_covers_every_site_in_runs_of_the_configured_size(make_farm, dagster_home):
    from datetime import datetime, timezone

    farm = make_farm(5, sites_per_run=2)
    names = [s["name"] for s in farm.sites]
    instance = dg.DagsterInstance.get()
    defs = build_definitions(load_config())
    schedule = defs.resolve_schedule_def("daily_backup_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    when = datetime(2026, 11, 27, 2, tzinfo=timezone.utc)
    empty = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert empty.run_requests == [] and "no sites yet" in empty.skip_message

    instance.add_dynamic_partitions("sites", names)
    data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    ranges = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
              for r in data.run_requests]
    assert ranges == [(names[0], names[1]), (names[2], names[3]), (names[4], names[4])]
    assert len({r.run_key for r in data.run_requests}) == 3


def test_retention_follows_a_backup_run_for_the_same_sites_even_when_some_failed(make_farm, dagster_home, db):
    from sensors.retention_after_backup import retention_after_failed_backup
    from wpfarm_assets.partitions import partition_range_tags

    farm = make_farm(3)
    names = [s["name"] for s in farm.sites]
    db.drop_database(farm.sites[1]["database"])
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", names)
    defs = build_definitions(load_config())
    result = defs.resolve_job_def("back_up_sites").execute_in_process(
        instance=instance, tags=partition_range_tags(names[0], names[2]), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="retention_after_failed_backup", dagster_event=failure, dagster_instance=instance,
        dagster_run=result.dagster_run).for_run_failure()
    request = retention_after_failed_backup(context)
    assert request.tags == partition_range_tags(names[0], names[2])
    retention = defs.resolve_job_def("apply_retention").execute_in_process(instance=instance, tags=request.tags)
    assert retention.success  # the broken site had no backups: nothing to keep or delete


def test_retention_follows_ui_backfills_and_not_twice_the_clis_own_runs():
    from sensors.retention_after_backup import RETENTION_BY_CLI, retention_request
    from wpfarm_assets.partitions import partition_range_tags

    tags = partition_range_tags("a.example.com", "c.example.com")
    dump = {dg.AssetKey("database_dump")}
    backfill = dg.DagsterRun(job_name="__ASSET_JOB", run_id="r1", tags=tags, asset_selection=dump)
    assert retention_request(backfill).tags == tags  # a UI backfill runs as an asset job
    cli = dg.DagsterRun(job_name="back_up_sites", run_id="r2", tags={**tags, RETENTION_BY_CLI: "cli"})
    assert isinstance(retention_request(cli), dg.SkipReason)  # `wpfarm backup` applied it itself

    again = dg.DagsterRun(job_name="back_up_sites", run_id="r3", tags={**tags, RETENTION_BY_CLI: "cli"},
                          parent_run_id="r2", root_run_id="r2")
    assert retention_request(again).tags == tags  # re-executed from the UI: no CLI there to apply it
    other = dg.DagsterRun(job_name="__ASSET_JOB", run_id="r4", tags=tags, asset_selection={dg.AssetKey("retention")})
    assert isinstance(retention_request(other), dg.SkipReason)


def test_the_checks_follow_the_daemons_retention_and_drill_runs_and_not_twice_the_clis_own():
    from sensors.checks_after_runs import checks_request
    from wpfarm_assets.dagster_storage import PROCESS_TAG
    from wpfarm_assets.partitions import partition_range_tags

    tags = partition_range_tags("a.example.com", "c.example.com", 3)
    assert tags["wpfarm/sites"] == "a.example.com … c.example.com (3)"
    daemon = dg.DagsterRun(job_name="apply_retention", run_id="r1", tags=tags)
    request = checks_request(daemon)
    assert isinstance(request, dg.RunRequest) and request.run_key == "checks-after:r1"
    cli = dg.DagsterRun(job_name="drill_sites", run_id="r2", tags={**tags, PROCESS_TAG: "vm:1:2"})
    assert isinstance(checks_request(cli), dg.SkipReason)
    again = dg.DagsterRun(job_name="drill_sites", run_id="r3", parent_run_id="r2", root_run_id="r2",
                         tags=cli.tags)  # re-executed in the UI
    assert isinstance(checks_request(again), dg.RunRequest)
