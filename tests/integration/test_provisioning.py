"""Provisioning against the DigitalOcean emulator, a real Docker Swarm and the real MariaDB."""

import base64
import json
import os
import subprocess

import dagster as dg
import pytest
from driving import plan_of, provision

from resources.mariadb import MariaDB
from resources.ssh import CommandError, LocalRunner
from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_resources
from wpfarm_assets.provisioning.assets import site_provisioning
from wpfarm_assets.provisioning.plans import SITE_PRIVILEGES, secret_name, site_slug

TOPOLOGY = {"project": "wpt", "region": "fra1", "image": "docker-20-04", "ssh_keys": ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"],
            "tiers": {"manager": {"count": 1, "size": "s-8vcpu-16gb", "role": "manager", "labels": {"zone": "a"}},
                      "worker": {"count": 2, "size": "s-8vcpu-16gb", "labels": {"wordpress": "true"}},
                      "database": {"count": 3, "size": "m-4vcpu-32gb", "region": "ams3", "tags": ["galera"]}}}


def test_droplets_from_an_empty_account_exactly_once_and_a_dry_run_of_a_changed_topology(
        make_farm, dagster_home, digitalocean):
    make_farm(1, sections={"topology": TOPOLOGY})
    result = provision(["provision_droplets"])
    created = {d["name"]: d for d in digitalocean.droplets.values()}
    assert sorted(created) == ["wpt-database-01", "wpt-database-02", "wpt-database-03", "wpt-manager-01",
                               "wpt-worker-01", "wpt-worker-02"]
    db = created["wpt-database-02"]
    assert (db["size_slug"], db["region"]["slug"], db["image"]["slug"]) == ("m-4vcpu-32gb", "ams3", "docker-20-04")
    assert db["tags"] == ["wpt", "wpt-database", "galera"] and db["ssh_keys"] == TOPOLOGY["ssh_keys"]
    assert db["user_data"].startswith("#cloud-config")
    assert sorted(plan_of(result, "provision_droplets")) == [("create", name) for name in sorted(created)]

    posts = len([r for r in digitalocean.requests if r[0] == "POST"])
    again = provision(["provision_droplets"])
    assert plan_of(again, "provision_droplets") == []
    assert len([r for r in digitalocean.requests if r[0] == "POST"]) == posts  # nothing created twice

    changed = {**TOPOLOGY, "tiers": {**TOPOLOGY["tiers"], "worker": {**TOPOLOGY["tiers"]["worker"], "count": 4},
                                     "database": {**TOPOLOGY["tiers"]["database"], "count": 2}}}
    make_farm(1, sections={"topology": changed})
    before = dict(digitalocean.droplets)
    dry = provision(["provision_droplets"], dry_run=True)
    assert plan_of(dry, "provision_droplets") == [("create", "wpt-worker-03"), ("create", "wpt-worker-04"),
                                                  ("keep", "wpt-database-03")]
    assert digitalocean.droplets == before  # a dry run changes nothing
    destroyed = provision(["provision_droplets"], destroy_extra=True)
    assert ("destroy", "wpt-database-03") in plan_of(destroyed, "provision_droplets")
    assert sorted(d["name"] for d in digitalocean.droplets.values()) == [
        "wpt-database-01", "wpt-database-02", "wpt-manager-01", "wpt-worker-01", "wpt-worker-02", "wpt-worker-03",
        "wpt-worker-04"]


def swarm_farm(make_farm, swarm, **provisioning):
    return make_farm(1, sections={
        "swarm": {"docker_host": swarm.docker_host, "advertise_addr": "127.0.0.1"},
        "topology": {"project": "wpt", "tiers": {"manager": {"count": 1, "size": "s-8vcpu-16gb", "role": "manager",
                                                            "labels": {"zone": "a"}}}},
        "provisioning": {"networks": ["wpt-frontend", "wpt-backend"], **provisioning}})


def test_labels_and_networks_on_a_real_swarm_are_idempotent_and_a_removed_label_comes_back(
        make_farm, dagster_home, swarm):
    swarm.set_labels(owner="ops")  # a label wpfarm does not manage stays
    swarm_farm(make_farm, swarm)
    steps = ["init_swarm", "label_nodes", "create_networks"]
    first = provision(steps)
    assert plan_of(first, "init_swarm") == []  # already a Swarm
    assert plan_of(first, "label_nodes") == [("set-labels", "wpt-manager-01")]
    assert sorted(plan_of(first, "create_networks")) == [("create", "wpt-backend"), ("create", "wpt-frontend")]
    node = json.loads(swarm.docker("node", "inspect", swarm.node_id()))[0]
    assert node["Spec"]["Labels"] == {"owner": "ops", "tier": "manager", "zone": "a"}
    for name in ("wpt-frontend", "wpt-backend"):
        network = json.loads(swarm.docker("network", "inspect", name))[0]
        assert network["Driver"] == "overlay" and "encrypted" in network["Options"] and network["Attachable"]

    again = provision(steps)
    assert all(plan_of(again, step) == [] for step in steps)

    swarm.docker("node", "update", "--label-rm", "zone", swarm.node_id())
    healed = provision(["label_nodes"])
    assert plan_of(healed, "label_nodes") == [("set-labels", "wpt-manager-01")]
    assert json.loads(swarm.docker("node", "inspect", swarm.node_id()))[0]["Spec"]["Labels"]["zone"] == "a"


def materialize_sites(names):
    return dg.materialize([site_provisioning], resources=build_resources(load_config()), instance=dg.DagsterInstance.get(),
                          partition_key=names[0] if len(names) == 1 else None,
                          tags={} if len(names) == 1 else {"dagster/asset_partition_range_start": names[0],
                                                            "dagster/asset_partition_range_end": names[-1]},
                          raise_on_error=False)


def test_a_site_stack_and_secret_on_a_real_swarm_deploy_once(make_farm, dagster_home, swarm, db):
    image = swarm.import_image("wpfarm-test/busybox:1")
    swarm_farm(make_farm, swarm, wordpress_image=image, content_owner=None, networks=["wpfarm-frontend", "wpfarm-backend"])
    provision(["create_networks"])
    site = load_config().sites[0]
    db.query(f"DROP USER IF EXISTS '{site.database}'@'%'")
    dg.DagsterInstance.get().add_dynamic_partitions("sites", [site.name])
    stack = f"site-{site_slug(site.name)}"
    try:
        result = materialize_sites([site.name])
        assert result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
        metadata = result.asset_materializations_for_node("site_provisioning")[0].metadata
        assert metadata["stack"].value == stack and metadata["stack_deploy"].value.startswith("new")
        assert metadata["password"].value == "set"
        services = json.loads("[" + ",".join(swarm.docker("service", "ls", "--format", "{{json .}}",
                                                          "--filter", f"label=com.docker.stack.namespace={stack}").splitlines()) + "]")
        assert [s["Name"] for s in services] == [f"{stack}_wordpress"]
        spec = json.loads(swarm.docker("service", "inspect", f"{stack}_wordpress"))[0]
        assert spec["Spec"]["Labels"]["wpfarm.site"] == site.name
        assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith(image)
        first_secret = f"{secret_name(site)}-v1"
        assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"] == first_secret
        assert swarm.docker("secret", "ls", "--format", "{{.Name}}", "--filter", f"name={secret_name(site)}") == first_secret

        again = materialize_sites([site.name])
        metadata = again.asset_materializations_for_node("site_provisioning")[0].metadata
        assert metadata["stack_deploy"].value == "unchanged" and metadata["password"].value == "kept"
        assert json.loads(swarm.docker("service", "inspect", f"{stack}_wordpress"))[0]["Version"] == spec["Version"]

        # The database server was rebuilt: the user is gone, the stack still holds the old secret. A new
        # password goes into a new version, the stack moves to it, the old version goes.
        db.query(f"DROP USER '{site.database}'@'%'")
        healed = materialize_sites([site.name])
        metadata = healed.asset_materializations_for_node("site_provisioning")[0].metadata
        assert metadata["password"].value == "set" and metadata["secret"].value == f"{secret_name(site)}-v2"
        assert metadata["stack_deploy"].value.startswith("changed") and db.user_exists(site.database, "%")
        spec = json.loads(swarm.docker("service", "inspect", f"{stack}_wordpress"))[0]
        assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"] == f"{secret_name(site)}-v2"
        assert first_secret not in swarm.docker("secret", "ls", "--format", "{{.Name}}").split()  # pruned
    finally:  # the Swarm is shared: no site service may outlive the test (discovery would find it)
        swarm.docker("stack", "rm", stack)
        db.query(f"DROP USER IF EXISTS '{site.database}'@'%'")


def test_a_provisioned_site_user_can_use_its_own_database_and_no_other(make_farm, dagster_home, db, tmp_path):
    make_farm(2, sections={"provisioning": {"secrets_dir": str(tmp_path / "secrets"), "content_owner": None}})
    config = load_config()
    mine, other = config.sites
    names = [s.name for s in config.sites]
    for site in config.sites:
        db.query(f"DROP USER IF EXISTS '{site.database}'@'%'")
    db.drop_database(mine.database)  # provisioning creates it
    dg.DagsterInstance.get().add_dynamic_partitions("sites", names)
    result = materialize_sites(names)
    assert result.success
    secret = tmp_path / "secrets" / secret_name(mine)
    password = secret.read_text()
    assert secret.stat().st_mode & 0o777 == 0o600 and len(password) >= 32
    as_site = MariaDB(LocalRunner(), "127.0.0.1", 3306, mine.database, password)
    as_site.query(f"CREATE TABLE `{mine.database}`.wp_test (id INT PRIMARY KEY); "
                  f"INSERT INTO `{mine.database}`.wp_test VALUES (1)")  # its own database
    assert as_site.query(f"SELECT COUNT(*) FROM `{mine.database}`.wp_test") == [["1"]]
    with pytest.raises(CommandError, match="denied"):
        as_site.query(f"SELECT COUNT(*) FROM `{other.database}`.wp_posts")
    with pytest.raises(CommandError, match="denied"):
        as_site.query("CREATE DATABASE wpt_not_mine")
    lookalike = mine.database.replace("_", "x")  # what wp_a_b would match if _ were left a wildcard
    db.create_database(lookalike)
    try:
        with pytest.raises(CommandError, match="denied"):
            as_site.query(f"CREATE TABLE `{lookalike}`.t (id INT)")
    finally:
        db.drop_database(lookalike)
    grants = db.query(f"SHOW GRANTS FOR '{mine.database}'@'%'")
    escaped = mine.database.replace("_", "\\_")
    assert [g[0] for g in grants][1:] == [f"GRANT {SITE_PRIVILEGES} ON `{escaped}`.* TO `{mine.database}`@`%`"]

    again = materialize_sites(names)  # safe to materialize again: same password, nothing lost
    assert again.success and secret.read_text() == password
    assert as_site.query(f"SELECT COUNT(*) FROM `{mine.database}`.wp_test") == [["1"]]
    db.query(f"DROP USER '{mine.database}'@'%'")  # a rebuilt server: the user comes back with the site's password
    healed = materialize_sites(names)
    assert healed.success and secret.read_text() == password
    assert as_site.query(f"SELECT COUNT(*) FROM `{mine.database}`.wp_test") == [["1"]]
    found = subprocess.run(["grep", "-rlF", "-e", password, str(dagster_home)], capture_output=True, text=True)
    assert (found.returncode, found.stdout) == (1, "")  # never logged, never in metadata (1: grep found nothing)
    for site in config.sites:
        db.query(f"DROP USER IF EXISTS '{site.database}'@'%'")


def test_the_shipped_stacks_deploy_once_and_varnish_follows_the_deployed_sites(make_farm, dagster_home, swarm,
                                                                              db, monkeypatch):
    image = swarm.import_image("wpfarm-test/busybox:1")
    swarm_farm(make_farm, swarm, networks=["wpfarm-frontend", "wpfarm-backend", "wpfarm-database"],
               wordpress_image=image, content_owner=None)
    monkeypatch.setenv("DAGSTER_PG_HOST", "dagster-postgres.internal")
    for name in ("spaces_access_key_id", "spaces_secret_access_key", "digitalocean_token", "wpfarm_db_password",
                 "redis_password", "dagster_pg_password"):
        if not swarm.docker("secret", "ls", "-q", "--filter", f"name={name}"):
            subprocess.run(["docker", "secret", "create", name, "-"], input=b"test", check=True, capture_output=True,
                           env={**os.environ, "DOCKER_HOST": swarm.docker_host})
    first = provision(["create_networks", "deploy_stacks"])
    assert sorted(plan_of(first, "deploy_stacks")) == [("deploy", "backup"), ("deploy", "cache")]
    services = set(swarm.docker("service", "ls", "--format", "{{.Name}}").split())
    assert {"cache_varnish", "cache_redis-master", "cache_redis-replica", "cache_redis-sentinel",
            "backup_code-location", "backup_daemon", "backup_webserver"} <= services
    swarm.docker("service", "scale", "--detach", "backup_code-location=0", "backup_daemon=0", "backup_webserver=0")
    daemon = json.loads(swarm.docker("service", "inspect", "backup_daemon"))[0]["Spec"]["TaskTemplate"]
    assert "DAGSTER_PG_HOST=dagster-postgres.internal" in daemon["ContainerSpec"]["Env"]
    assert daemon["Placement"]["Constraints"] == ["node.role == manager"]

    def varnish_configs() -> dict[str, str]:
        spec = json.loads(swarm.docker("service", "inspect", "cache_varnish"))[0]["Spec"]["TaskTemplate"]
        return {c["File"]["Name"]: c["ConfigName"] for c in spec["ContainerSpec"]["Configs"]}

    def config_text(name: str) -> str:
        return base64.b64decode(json.loads(swarm.docker("config", "inspect", name))[0]["Spec"]["Data"]).decode()

    before = varnish_configs()
    assert before["/etc/varnish/default.vcl"].startswith("cache_varnish_vcl_")
    again = provision(["create_networks", "deploy_stacks"])
    assert plan_of(again, "deploy_stacks") == [] and plan_of(again, "create_networks") == []

    site = load_config().sites[0]  # a new site: its stack, then Varnish routes to it
    dg.DagsterInstance.get().add_dynamic_partitions("sites", [site.name])
    try:
        assert materialize_sites([site.name]).success
        after = varnish_configs()
        assert after["/etc/varnish/sites.vcl"] != before["/etc/varnish/sites.vcl"]
        routing = config_text(after["/etc/varnish/sites.vcl"])
        assert f'req.http.host == "{site.name}"' in routing and f"site-{site_slug(site.name)}_wordpress" in routing
        assert plan_of(provision(["deploy_stacks"]), "deploy_stacks") == []  # deploy_stacks agrees
    finally:
        swarm.docker("stack", "rm", f"site-{site_slug(site.name)}")
        db.query(f"DROP USER IF EXISTS '{site.database}'@'%'")
        for stack in ("cache", "backup"):
            swarm.docker("stack", "rm", stack)


def test_wpfarm_provision_plans_by_default_and_applies_when_asked(make_farm, dagster_home, digitalocean, capsys):
    from wpfarm_assets.cli import main

    make_farm(1, sections={"topology": TOPOLOGY})
    assert main(["provision", "--step", "provision_droplets"]) == 0
    out = capsys.readouterr().out
    assert "provision_droplets: 6 change(s) (plan only)" in out and "create     wpt-database-03: m-4vcpu-32gb in ams3" in out
    assert digitalocean.droplets == {}
    assert main(["provision", "--step", "provision_droplets", "--apply"]) == 0
    assert len(digitalocean.droplets) == 6
    assert main(["provision", "--step", "provision_droplets"]) == 0
    assert "provision_droplets: no change(s) (plan only)" in capsys.readouterr().out
