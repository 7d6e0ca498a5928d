"""The provisioning plans: what would change, and nothing when nothing differs."""

import pytest
import yaml

from wpfarm_assets.core.config import ProvisioningConfig, Site, TopologyConfig
from wpfarm_assets.core.topology import Droplet, Node
from wpfarm_assets.provisioning.plans import (
    STACK_HASH_LABEL,
    Change,
    default_database_name,
    deployed_site_backends,
    plan_joins,
    plan_labels,
    plan_networks,
    plan_stack,
    plan_swarm_init,
    render_site_stack,
    site_slug,
    sites_vcl,
)

TOPOLOGY = TopologyConfig(project="wp", tiers={"manager": {"count": 2, "size": "s", "role": "manager"},
                                               "worker": {"count": 1, "size": "s", "labels": {"wordpress": "true"}}})


def droplet(name):
    return Droplet(1, name, "s", "fra1", "active", ("wp",), "10.0.0.9")


def node(host, **labels):
    return Node(host, host, "manager", "active", "ready", "20.10", tuple(sorted(labels.items())))


def test_swarm_init_only_when_inactive_and_only_with_an_address():
    assert plan_swarm_init("active", None) == []
    assert plan_swarm_init("inactive", "10.0.0.2") == [Change("swarm", "init", "advertise 10.0.0.2")]
    with pytest.raises(ValueError, match="advertise_addr"):
        plan_swarm_init("inactive", None)


def test_joins_are_the_topology_droplets_not_in_the_swarm_with_their_tier_role():
    droplets = [droplet("wp-manager-01"), droplet("wp-manager-02"), droplet("wp-worker-01"), droplet("stray")]
    changes = plan_joins(TOPOLOGY, droplets, [node("wp-manager-01")])
    assert [(c.target, c.detail) for c in changes] == [("wp-manager-02", "as manager (10.0.0.9)"),
                                                       ("wp-worker-01", "as worker (10.0.0.9)")]


def test_droplets_still_booting_wait_for_the_next_run():
    booting = Droplet(2, "wp-manager-02", "s", "fra1", "new", ("wp",), None)
    (change,) = plan_joins(TOPOLOGY, [droplet("wp-manager-01"), booting], [node("wp-manager-01")])
    assert (change.action, change.target) == ("keep", "wp-manager-02") and "not ready" in change.detail


def test_labels_come_from_the_host_name_and_keep_foreign_labels():
    nodes = [node("wp-worker-01", owner="ops"), node("wp-manager-01", tier="manager"), node("laptop")]
    (change,) = plan_labels(TOPOLOGY, nodes)
    assert change.target == "wp-worker-01" and change.detail == "tier=worker, wordpress=true"
    assert change.payload[1] == {"owner": "ops", "tier": "worker", "wordpress": "true"}


def test_networks_missing_are_created_and_unencrypted_ones_reported():
    existing = {"a": {"driver": "overlay", "options": {"encrypted": ""}}, "b": {"driver": "overlay", "options": {}}}
    assert plan_networks(["a", "b", "c"], existing) == [
        Change("b", "keep", "exists but is not an encrypted overlay: recreate it by hand"),
        Change("c", "create", "overlay, encrypted, attachable")]


def test_a_stack_is_deployed_when_new_or_changed_and_not_otherwise():
    compose = {"services": {"web": {"image": "x"}}}
    (new,) = plan_stack("s", yaml.safe_load(yaml.safe_dump(compose)), {})
    digest = yaml.safe_load(new.payload)["services"]["web"]["deploy"]["labels"][STACK_HASH_LABEL]
    assert new.detail == "new: s_web"
    assert plan_stack("s", yaml.safe_load(yaml.safe_dump(compose)), {"s_web": {STACK_HASH_LABEL: digest}}) == []
    changed = {"services": {"web": {"image": "y"}}}
    assert plan_stack("s", changed, {"s_web": {STACK_HASH_LABEL: digest}})[0].detail == "changed: s_web"


def test_site_stack_values_cannot_change_the_files_structure():
    template = {"services": {"wordpress": {"image": "$image", "volumes": [{"source": "$content_path"}],
                                           "deploy": {"replicas": "$replicas"}}}, "secrets": {"$secret": {"external": True}}}
    site = Site(name="a.example.com", database="wp_a", content_path="/srv/a: {evil: true} #x")
    rendered = render_site_stack(template, site, ProvisioningConfig(site_replicas=3), "a-db-password-v2")
    assert rendered["services"]["wordpress"]["volumes"] == [{"source": "/srv/a: {evil: true} #x"}]
    assert rendered["services"]["wordpress"]["deploy"]["replicas"] == 3
    assert list(rendered["secrets"]) == ["a-db-password-v2"]


def test_site_slugs_and_default_database_names_are_short_readable_and_distinct():
    long_a, long_b = "a" * 30 + ".example.com", "a" * 30 + ".example.org"
    assert site_slug("blog.example.com").startswith("blog-example-com-")
    assert len(site_slug(long_a)) <= 40 and site_slug(long_a) != site_slug(long_b)
    assert site_slug("my-site.com") != site_slug("my.site.com")
    assert default_database_name("my-site.com") != default_database_name("my.site.com")
    assert default_database_name("my.site.com").startswith("wp_my_site_com_")
    assert len(default_database_name("a" * 200 + ".com")) <= 64


def test_sites_vcl_routes_each_site_and_refuses_what_could_break_out_of_a_string():
    vcl = sites_vcl([("b.example.com", "site-b_wordpress", 80), ("a.example.com", "site-a_wordpress", 80)])
    assert vcl.index('"a.example.com"') < vcl.index('"b.example.com"')  # stable order: same sites, same file
    assert 'req.http.host == "www.a.example.com"' in vcl and '.host = "site-a_wordpress"' in vcl
    assert sites_vcl([]).count("backend ") == 1  # "backend default none": compiles with no site
    with pytest.raises(ValueError):
        sites_vcl([("a.example.com", 'x"; } sub vcl_recv { return (pipe); } #', 80)])
    with pytest.raises(ValueError):
        sites_vcl([('a.example.com" || true', "site-a_wordpress", 80)])


def test_a_www_site_of_its_own_is_not_shadowed_by_its_parents_alias():
    vcl = sites_vcl([("example.com", "site-a_wordpress", 80), ("www.example.com", "site-b_wordpress", 80)])
    backend_of = {line.split()[1]: line.split('"')[1] for line in vcl.splitlines() if line.startswith("backend site_")}
    (www_rule,) = [line for line in vcl.splitlines() if '"www.example.com"' in line]
    assert backend_of[www_rule.split("backend_hint = ")[1].split(";")[0]] == "site-b_wordpress"


def test_routing_takes_one_service_per_site_and_skips_bad_labels():
    class Log:
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)

    log = Log()
    current = f"site-{site_slug('a.example.com')}_wordpress"
    announced = [{"name": "a.example.com", "service": "site-a-example-com_wordpress"},  # left from an old name
                 {"name": "a.example.com", "service": current},
                 {"name": "$(id).example.com", "service": "evil_wordpress"},
                 {"name": "b.example.com", "service": "site-b_worker"}]  # not the web service
    assert deployed_site_backends(announced, log) == [("a.example.com", current, 80)]
    assert len(log.lines) == 2 and "not routed" in log.lines[1]


def test_a_changed_environment_value_makes_a_changed_stack(monkeypatch):
    compose = {"services": {"web": {"image": "x", "environment": {"HOST": "${WPT_HOST:?}"}}}}
    monkeypatch.setenv("WPT_HOST", "a")
    (first,) = plan_stack("s", yaml.safe_load(yaml.safe_dump(compose)), {})
    digest = yaml.safe_load(first.payload)["services"]["web"]["deploy"]["labels"][STACK_HASH_LABEL]
    assert plan_stack("s", yaml.safe_load(yaml.safe_dump(compose)), {"s_web": {STACK_HASH_LABEL: digest}}) == []
    monkeypatch.setenv("WPT_HOST", "b")
    assert plan_stack("s", yaml.safe_load(yaml.safe_dump(compose)), {"s_web": {STACK_HASH_LABEL: digest}}) != []
