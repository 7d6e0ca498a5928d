"""The two sensors, evaluated by Dagster the way the daemon does (definitions, resources, cursor),
their run requests executed, against a real Docker Swarm and the real Alertmanager."""

import json

import dagster as dg
import yaml
from driving import Daemon, selected
from services import wait_for

from resources.alerts import AlertmanagerResource
from resources.object_store import open_store
from wpfarm_assets.core.config import load_config


def test_swarm_node_sensor_reruns_the_affected_tiers_and_alerts_until_the_node_is_back(
        make_farm, dagster_home, swarm, alertmanager, receivers):
    node = swarm.node_id()
    host = swarm.docker("node", "inspect", "--format", "{{.Description.Hostname}}", node)
    swarm.set_labels(tier="database", galera="true")
    make_farm(1, alerts={"alertmanager_url": alertmanager}, sections={
        "swarm": {"docker_host": swarm.docker_host},
        "topology": {"tiers": {"database": {"count": 1, "size": "m-4vcpu-32gb", "role": "manager",
                                            "labels": {"galera": "true"}}}}})
    firing = lambda: AlertmanagerResource(url=alertmanager).firing("WpfarmSwarmNode")  # noqa: E731
    daemon = Daemon("swarm_node_sensor")

    (first,) = daemon.tick()  # first look: every node is new
    assert selected(first) == {"swarm_nodes", "database_tier"} and f"{host} joined" in first.tags["wpfarm/swarm_change"]
    run = daemon.launch(first)
    assert run.success and all(c.passed for c in run.get_asset_check_evaluations())
    assert daemon.tick() == [] and firing() == []  # nothing changed, nothing wrong

    try:
        receivers.clear()
        swarm.docker("node", "update", "--availability", "drain", node)
        (drained,) = daemon.tick()
        assert selected(drained) == {"swarm_nodes", "database_tier"}
        assert "availability active → drain" in drained.tags["wpfarm/swarm_change"]
        assert firing() == [{"alertname": "WpfarmSwarmNode", "node": host, "tier": "database", "severity": "critical"}]
        checks = {c.asset_key.to_user_string(): c for c in daemon.launch(drained).get_asset_check_evaluations()}
        assert not checks["swarm_nodes"].passed and checks["swarm_nodes"].severity == dg.AssetCheckSeverity.ERROR
        assert "availability drain" in checks["swarm_nodes"].description
        wait_for(lambda: host in receivers.text()["sms"], "the critical node alert to reach the SMS bridge")

        swarm.docker("node", "update", "--availability", "active", node)
        (back,) = daemon.tick()
        assert "availability drain → active" in back.tags["wpfarm/swarm_change"]
        assert firing() == []  # resolved
        assert daemon.launch(back).success

        swarm.docker("node", "update", "--label-add", "galera=false", node)
        (relabelled,) = daemon.tick()
        assert selected(relabelled) == {"swarm_nodes", "database_tier"}
        assert "labels galera=true,tier=database → galera=false,tier=database" in relabelled.tags["wpfarm/swarm_change"]
        (alert,) = firing()
        assert alert["severity"] == "warning"  # up and active, only misplaced
        swarm.docker("node", "update", "--label-add", "galera=true", node)
        assert len(daemon.tick()) == 1 and firing() == []
        assert len(set(daemon.run_keys)) == 5  # drain and undrain are new changes, never deduplicated away
    finally:  # the Swarm is shared: leave its node as found
        swarm.docker("node", "update", "--availability", "active", node)
        swarm.set_labels()


def test_site_inventory_sensor_adds_backs_up_and_removes_sites_keeping_their_backups(make_farm, dagster_home):
    farm = make_farm(2)
    names = [s["name"] for s in farm.sites]
    daemon = Daemon("site_inventory_sensor")

    (first,) = daemon.tick()
    assert daemon.instance.get_dynamic_partitions("sites") == names
    store = open_store(load_config().backup.target)
    joined = {o.key.split("/")[1] for o in store.list("sites/") if o.key.endswith("/site.json")}
    assert joined == set(names)  # when each site joined: the clock for "never backed up"
    result = daemon.launch(first)
    assert result.success
    materialized = {(e.asset_key.to_user_string(), e.partition)
                    for e in (m.event_specific_data.materialization for m in result.get_asset_materialization_events())}
    assert materialized == {(a, n) for a in ("database_dump", "file_archive") for n in names}
    assert daemon.tick() == []

    config = yaml.safe_load(farm.config_path.read_text())
    config["sites"] = config["sites"][:1]
    farm.config_path.write_text(yaml.safe_dump(config))
    assert daemon.tick() == []  # a removal backs nothing up
    assert daemon.instance.get_dynamic_partitions("sites") == names  # retired: its partition stays, marked
    kept = {o.key.split("/")[2] for o in store.list(f"sites/{names[1]}/") if o.key.endswith(".json") and "site.json" not in o.key}
    assert kept == {"db", "files", "retired.json"}  # the removed site's backups are still there, and when it left
    marks = daemon.instance.fetch_observations(dg.AssetKey("database_dump"), limit=5).records
    assert [(m.partition_key, m.asset_observation.description[:8]) for m in marks] == [(names[1], "RETIRED:")]
    daemon.instance.add_dynamic_partitions("sites", ["by-hand.example.com"])  # added in the UI: not a site
    assert daemon.tick() == [] and "by-hand.example.com" not in daemon.instance.get_dynamic_partitions("sites")

    config["sites"].append(json.loads(json.dumps(farm.sites[1])))
    farm.config_path.write_text(yaml.safe_dump(config))
    (again,) = daemon.tick()  # back: a backup at once, and its history goes on
    assert daemon.instance.get_dynamic_partitions("sites") == names
    assert again.tags["dagster/asset_partition_range_start"] == names[1]
    assert not any(o.key.endswith("retired.json") for o in store.list(f"sites/{names[1]}/"))


def test_site_inventory_sensor_discovers_sites_from_swarm_service_labels(make_farm, dagster_home, swarm, tmp_path):
    image = swarm.import_image("wpfarm-test/busybox:1")
    farm = make_farm(1, sections={"swarm": {"docker_host": swarm.docker_host, "discover_sites": True}})
    found = "found.example.com"
    services = {"wpt-found": [f"wpfarm.site={found}", "wpfarm.database=wp_found",
                              f"wpfarm.content_path={tmp_path}/found/wp-content"],
                "wpt-hostile": ["wpfarm.site=$(id).example.com", "wpfarm.database=wp_x", "wpfarm.content_path=/srv/x"],
                "wpt-unlabelled": []}
    for name, labels in services.items():
        swarm.docker("service", "create", "--detach", "--name", name, *[a for l in labels for a in ("--label", l)], image)
    try:
        daemon = Daemon("site_inventory_sensor")
        (first,) = daemon.tick()
        assert daemon.instance.get_dynamic_partitions("sites") == [farm.sites[0]["name"], found]
        assert first.tags["dagster/asset_partition_range_end"] == found
        site = load_config().site(found)  # now in the inventory file, as if configured
        assert (site.database, site.content_path) == ("wp_found", f"{tmp_path}/found/wp-content")
        assert "$(id)" not in farm.config_path.read_text()  # an invalid label is skipped, never written
        assert daemon.tick() == []  # discovered once
    finally:
        for name in services:
            swarm.docker("service", "rm", name)


def test_a_two_node_swarm_built_by_provision_farm_and_a_node_going_down_seen_by_the_sensor(
        make_farm, dagster_home, digitalocean, alertmanager, cluster):
    from driving import plan_of, provision

    make_farm(1, alerts={"alertmanager_url": alertmanager}, sections={
        "swarm": {"docker_host": cluster.manager.docker_host, "advertise_addr": cluster.manager_addr},
        "topology": {"project": "wpt", "tiers": {
            "manager": {"count": 1, "size": "s-8vcpu-16gb", "role": "manager"},
            "database": {"count": 1, "size": "m-4vcpu-32gb", "labels": {"galera": "true"}}}},
        "provisioning": {"ssh_key_file": cluster.worker_ssh.key_file, "known_hosts": cluster.worker_ssh.known_hosts}})
    digitalocean.add_droplet("wpt-manager-01", "s-8vcpu-16gb", "fra1", ["wpt", "wpt-manager"], ip=cluster.manager_addr)
    digitalocean.add_droplet("wpt-database-01", "m-4vcpu-32gb", "fra1", ["wpt", "wpt-database"], ip=cluster.worker_addr)

    steps = ["init_swarm", "join_nodes", "label_nodes"]
    built = provision(steps)
    assert plan_of(built, "init_swarm") == [("init", "swarm")]
    assert plan_of(built, "join_nodes") == [("join", "wpt-database-01")]  # over SSH, as a worker
    assert plan_of(built, "label_nodes") == [("set-labels", "wpt-database-01"), ("set-labels", "wpt-manager-01")]
    nodes = {n["Description"]["Hostname"]: n for n in json.loads(cluster.manager.docker(
        "node", "inspect", *cluster.manager.docker("node", "ls", "-q").split()))}
    assert nodes["wpt-database-01"]["Spec"]["Role"] == "worker" and nodes["wpt-manager-01"]["Spec"]["Role"] == "manager"
    assert nodes["wpt-database-01"]["Spec"]["Labels"] == {"tier": "database", "galera": "true"}
    again = provision(steps)
    assert all(plan_of(again, step) == [] for step in steps)

    state = lambda: cluster.manager.docker("node", "inspect", "--format", "{{.Status.State}}", "wpt-database-01")  # noqa: E731
    wait_for(lambda: state() == "ready", "the joined node to be ready", timeout=60)
    daemon = Daemon("swarm_node_sensor")
    (first,) = daemon.tick()
    assert "wpt-database-01 joined" in first.tags["wpfarm/swarm_change"]
    assert AlertmanagerResource(url=alertmanager).firing("WpfarmSwarmNode") == []

    cluster.worker_engine.terminate()  # the database node's engine dies; the manager notices
    wait_for(lambda: state() == "down", "the manager to mark the database node down", timeout=90)
    (down,) = daemon.tick()
    assert selected(down) == {"swarm_nodes", "database_tier"}
    assert "wpt-database-01: state ready → down" in down.tags["wpfarm/swarm_change"]
    (alert,) = AlertmanagerResource(url=alertmanager).firing("WpfarmSwarmNode")
    assert (alert["node"], alert["tier"], alert["severity"]) == ("wpt-database-01", "database", "critical")


def test_an_unreachable_swarm_manager_is_a_critical_alert_until_it_answers(make_farm, dagster_home, swarm,
                                                                          alertmanager, tmp_path):
    farm = make_farm(1, alerts={"alertmanager_url": alertmanager},
                     sections={"swarm": {"docker_host": f"unix://{tmp_path}/no-docker.sock"}})
    firing = lambda: AlertmanagerResource(url=alertmanager).firing("WpfarmSwarmUnreachable")  # noqa: E731
    daemon = Daemon("swarm_node_sensor")
    assert daemon.tick() == []
    (alert,) = firing()
    assert alert["severity"] == "critical"
    config = yaml.safe_load(farm.config_path.read_text())
    config["swarm"]["docker_host"] = swarm.docker_host
    farm.config_path.write_text(yaml.safe_dump(config))
    assert len(daemon.tick()) == 1 and firing() == []  # answers again: resolved, and a first look
