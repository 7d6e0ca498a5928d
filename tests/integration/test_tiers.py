"""The infrastructure assets against real services: MariaDB, Redis + Sentinel, Varnish, GlusterFS,
Prometheus + Alertmanager, Docker Swarm; droplets against the DigitalOcean emulator."""

import os
import signal
import time

import dagster as dg
from services import free_port, wait_for
from services import gluster as gluster_cli

from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_resources
from wpfarm_assets.infrastructure.assets import (
    cache_tier,
    database_tier,
    droplets,
    monitoring_tier,
    storage_tier,
    swarm_nodes,
)


def materialize(asset):
    """Check one infrastructure asset, as check_infrastructure does."""
    defs = dg.Definitions(assets=[asset], jobs=[dg.define_asset_job("check", selection=[asset])],
                          resources=build_resources(load_config()))
    return defs.resolve_job_def("check").execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)


def metadata_of(result, asset) -> dict:
    (event,) = result.asset_materializations_for_node(asset.key.path[-1])
    return {k: v.value for k, v in event.metadata.items()}


def check_of(result):
    (check,) = result.get_asset_check_evaluations()
    return check


def is_down(result) -> bool:
    """Down or unreachable: the check fails at ERROR (the step itself succeeds, so that the
    assets downstream of it still run)."""
    check = check_of(result)
    return result.success and not check.passed and check.severity == dg.AssetCheckSeverity.ERROR


def failure_message(result) -> str:
    return check_of(result).description


def test_database_tier_reports_the_real_server(make_farm, dagster_home, db):
    make_farm(1)
    result = materialize(database_tier)
    assert result.success
    metadata = metadata_of(result, database_tier)
    assert metadata["mode"] == "standalone" and metadata["version"] == db.version()
    assert int(metadata["uptime"]) > 0 and check_of(result).passed


def test_a_stopped_database_server_is_a_clear_failure(make_farm, dagster_home):
    port = free_port()  # nothing listens there
    make_farm(1, sections={"database": {"port": port}})
    result = materialize(database_tier)
    assert is_down(result)
    message = failure_message(result)
    assert f"database tier unreachable at 127.0.0.1:{port}" in message and "Can't connect" in message


def test_cache_tier_follows_sentinel_and_warns_on_a_lost_replica(make_farm, dagster_home, cache):
    make_farm(1, sections={"cache": {"redis": cache.master, "sentinel": cache.sentinel, "replicas": 1,
                                     "varnish_health_url": cache.varnish_health_url}})
    result = materialize(cache_tier)
    assert result.success and check_of(result).passed
    metadata = metadata_of(result, cache_tier)
    assert metadata["sentinel_master"] == cache.master and metadata["redis_role"] == "master"
    assert metadata["replicas"] == "1" and metadata["varnish"] == "ok"

    import redis

    client = redis.Redis(host="127.0.0.1", port=int(cache.master.split(":")[1]))
    cache.replica.send_signal(signal.SIGSTOP)  # the replica hangs: the master drops it after its timeout
    try:
        client.config_set("repl-timeout", 2)
        deadline = time.monotonic() + 30
        while client.info("replication")["connected_slaves"] and time.monotonic() < deadline:
            time.sleep(0.5)
        result = materialize(cache_tier)
        assert result.success  # degraded, not down
        check = check_of(result)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert "Redis master has 0 of 1 replicas" in check.description
    finally:  # the cache services are shared: leave the replica connected
        cache.replica.send_signal(signal.SIGCONT)
        client.config_set("repl-timeout", 60)
        wait_for(lambda: client.info("replication")["connected_slaves"] == 1, "the replica to reconnect")


def test_cache_tier_fails_when_varnish_does_not_answer(make_farm, dagster_home, cache):
    dead = f"http://127.0.0.1:{free_port()}/varnish-health"
    make_farm(1, sections={"cache": {"sentinel": cache.sentinel, "replicas": 1, "varnish_health_url": dead}})
    result = materialize(cache_tier)
    assert is_down(result)
    assert "cache tier down: Varnish health: " + dead + " unreachable" in failure_message(result)


def test_storage_tier_reads_the_gluster_volume_and_fails_when_its_brick_dies(make_farm, dagster_home, gluster):
    make_farm(1, sections={"storage": {"gluster_volume": gluster.name, "bricks": 2}})
    result = materialize(storage_tier)
    assert result.success
    assert metadata_of(result, storage_tier)["bricks_online"] == "1"
    check = check_of(result)
    assert not check.passed and f"volume {gluster.name} has 1 of 2 bricks" in check.description

    for pid in gluster.brick_pids():
        os.kill(pid, signal.SIGKILL)
    try:
        wait_for(lambda: "<status>1</status>" not in gluster_cli("volume", "status", gluster.name, "--xml"),
                 "glusterd to see the brick offline")
        result = materialize(storage_tier)
        assert is_down(result)
        assert f"storage tier down: volume {gluster.name}: every brick offline" in failure_message(result)
    finally:
        gluster_cli("volume", "start", gluster.name, "force")


def test_storage_tier_fails_clearly_for_an_unknown_volume(make_farm, dagster_home, gluster):
    make_farm(1, sections={"storage": {"gluster_volume": "no-such-volume"}})
    result = materialize(storage_tier)
    assert is_down(result)
    assert "storage tier down: GlusterFS: Volume no-such-volume does not exist" in failure_message(result)


def test_monitoring_tier_warns_on_a_down_target_and_fails_without_prometheus(
        make_farm, dagster_home, prometheus_server, alertmanager):
    make_farm(1, alerts={"alertmanager_url": alertmanager},
              sections={"monitoring": {"prometheus_url": prometheus_server.url}})
    result = materialize(monitoring_tier)
    assert result.success
    assert metadata_of(result, monitoring_tier) == {"prometheus": "ready", "alertmanager": "ready", "targets": "2"}
    check = check_of(result)
    assert not check.passed and f"1 of 2 scrape targets down: gone/{prometheus_server.dead_target}" in check.description

    dead = f"http://127.0.0.1:{free_port()}"
    make_farm(1, alerts={"alertmanager_url": alertmanager}, sections={"monitoring": {"prometheus_url": dead}})
    result = materialize(monitoring_tier)
    assert is_down(result)
    assert f"monitoring tier down: prometheus not ready: {dead}/-/ready unreachable" in failure_message(result)


TOPOLOGY = {"project": "wpt", "region": "fra1", "tiers": {
    "manager": {"count": 1, "size": "s-8vcpu-16gb", "role": "manager"},
    "database": {"count": 2, "size": "m-4vcpu-32gb", "labels": {"galera": "true"}}}}


def test_droplets_compared_with_the_topology(make_farm, dagster_home, digitalocean):
    make_farm(1, sections={"topology": TOPOLOGY})
    digitalocean.add_droplet("wpt-manager-01", "s-8vcpu-16gb", "fra1", ["wpt", "wpt-manager"])
    digitalocean.add_droplet("wpt-database-01", "s-2vcpu-4gb", "fra1", ["wpt", "wpt-database"])
    digitalocean.add_droplet("wpt-database-07", "m-4vcpu-32gb", "fra1", ["wpt", "wpt-database"])
    digitalocean.add_droplet("someone-elses", "s-1vcpu-1gb", "nyc3", ["other"])
    result = materialize(droplets)
    assert result.success
    metadata = metadata_of(result, droplets)
    assert metadata["count"] == 3  # only the project's droplets (by tag)
    assert [r.data["name"] for r in metadata["table"].records] == ["wpt-database-01", "wpt-database-07", "wpt-manager-01"]
    check = check_of(result)
    assert not check.passed
    differences = {(r.data["name"], r.data["problem"]) for r in check.metadata["differences"].value.records}
    assert differences == {("wpt-database-01", "size s-2vcpu-4gb, topology says m-4vcpu-32gb"),
                           ("wpt-database-02", "missing"), ("wpt-database-07", "extra: not in the topology")}
    assert ("GET", "/v2/droplets/") in digitalocean.requests or ("GET", "/v2/droplets") in digitalocean.requests


def test_droplets_fail_clearly_on_a_bad_token(make_farm, dagster_home, digitalocean, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "wrong")
    make_farm(1, sections={"topology": TOPOLOGY})
    result = materialize(droplets)
    assert is_down(result)
    assert "listing droplets tagged 'wpt' failed: Unable to authenticate you" in failure_message(result)


def test_swarm_nodes_from_the_real_docker_api(make_farm, dagster_home, swarm):
    swarm.set_labels(tier="manager")
    make_farm(1, sections={"swarm": {"docker_host": swarm.docker_host},
                           "topology": {"tiers": {"manager": {"count": 1, "size": "s-8vcpu-16gb", "role": "manager"}}}})
    result = materialize(swarm_nodes)
    assert result.success and check_of(result).passed
    (row,) = [r.data for r in metadata_of(result, swarm_nodes)["table"].records]
    engine = swarm.docker("version", "--format", "{{.Server.Version}}")
    assert row == {"hostname": row["hostname"], "tier": "manager", "role": "manager", "availability": "active",
                   "state": "ready", "engine": engine, "labels": "tier=manager"}
    swarm.set_labels()
    result = materialize(swarm_nodes)
    check = check_of(result)
    assert not check.passed and "no tier label" in check.description and "0 of 1 nodes" in check.description


def test_the_farms_vcl_routes_each_site_by_host_and_refuses_unknown_hosts(cache):
    import urllib.error
    import urllib.request

    def get(host: str) -> tuple[int, str]:
        request = urllib.request.Request(f"{cache.varnish}/", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    assert get(cache.site) == (200, f"site {cache.site}")
    assert get(f"www.{cache.site}:80") == (200, f"site {cache.site}")
    assert get("elsewhere.example.com")[0] == 404


def test_nothing_unconfigured_is_in_the_graph_so_nothing_unchecked_passes(make_farm, dagster_home, monkeypatch):
    """No DigitalOcean token, Swarm, cache, GlusterFS or monitoring: those parts are not in the
    definitions (no green, no passing check), the job says why; the database tier, configured, is checked."""
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    make_farm(1)
    from wpfarm_assets.definitions import build_definitions

    defs = build_definitions(load_config())
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()
            if graph.get(k).group_name == "infrastructure"} == {"database_tier"}
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("file_archive")).parent_keys} == {"site_provisioning"}
    assert "swarm_node_sensor" not in {sensor.name for sensor in defs.sensors}  # no Swarm to watch
    job = defs.resolve_job_def("check_infrastructure")
    for why in ("droplets: no DigitalOcean token", "swarm_nodes: no Swarm", "cache_tier: no cache tier",
                "storage_tier: no GlusterFS volume", "monitoring_tier: no Prometheus or Alertmanager"):
        assert why in job.description, job.description
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert result.success
    assert {c.asset_key.to_user_string(): c.passed for c in result.get_asset_check_evaluations()} == {
        "database_tier": True}
    assert {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()} == {"database_tier"}

    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "token")  # droplets checked, still no Swarm: the tiers hang from them,
    graph = build_definitions(load_config()).resolve_asset_graph()  # the backups only from the tier they need
    parents = {a: {k.to_user_string() for k in graph.get(dg.AssetKey(a)).parent_keys}
               for a in ("database_tier", "database_dump", "file_archive")}
    assert parents == {"database_tier": {"droplets"}, "database_dump": {"database_tier", "site_provisioning"},
                       "file_archive": {"site_provisioning"}}
