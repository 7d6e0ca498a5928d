"""Comparing droplets and Swarm nodes with the topology, judging the cache and storage tiers."""

from wpfarm_assets.core.config import CacheConfig, TopologyConfig
from wpfarm_assets.core.topology import (
    CRITICAL,
    WARNING,
    Difference,
    Droplet,
    Node,
    compare_droplets,
    compare_nodes,
    node_changes,
)
from wpfarm_assets.infrastructure.tiers import judge_cache, judge_gluster

TOPOLOGY = TopologyConfig(project="wp", tiers={
    "manager": {"count": 1, "size": "s-8vcpu-16gb", "role": "manager"},
    "worker": {"count": 2, "size": "s-8vcpu-16gb", "labels": {"wordpress": "true"}},
    "database": {"count": 1, "size": "m-4vcpu-32gb", "region": "ams3"}})


def node(host, tier, role="worker", availability="active", state="ready", **labels):
    labels = {"tier": tier, **labels} if tier else labels
    return Node(host, host, role, availability, state, "20.10", tuple(sorted(labels.items())))


def droplet(name, size="s-8vcpu-16gb", region="fra1", tags=()):
    return Droplet(1, name, size, region, "active", tuple(tags))


def test_droplets_as_configured_have_no_differences():
    found = [droplet("wp-manager-01"), droplet("wp-worker-01"), droplet("wp-worker-02"),
             droplet("wp-database-01", "m-4vcpu-32gb", "ams3")]
    assert compare_droplets(TOPOLOGY, found) == []


def test_missing_extra_wrong_size_and_region_are_each_named():
    found = [droplet("wp-manager-01", size="s-1vcpu-1gb"), droplet("wp-worker-01"),
             droplet("wp-database-01", "m-4vcpu-32gb", "fra1"), droplet("wp-worker-09", tags=("wp", "wp-worker"))]
    assert compare_droplets(TOPOLOGY, found) == [
        Difference("manager", "wp-manager-01", "size s-1vcpu-1gb, topology says s-8vcpu-16gb"),
        Difference("worker", "wp-worker-02", "missing"),
        Difference("database", "wp-database-01", "region fra1, topology says ams3"),
        Difference("worker", "wp-worker-09", "extra: not in the topology"),
    ]


HEALTHY = [node("m1", "manager", role="manager"), node("w1", "worker", wordpress="true"),
           node("w2", "worker", wordpress="true"), node("d1", "database")]


def test_nodes_as_configured_have_no_differences():
    assert compare_nodes(TOPOLOGY, HEALTHY) == []


def test_a_down_or_drained_manager_or_database_node_is_critical_a_worker_a_warning():
    down = [node("m1", "manager", role="manager", state="down"), HEALTHY[1],
            node("w2", "worker", availability="drain", wordpress="true"), node("d1", "database", availability="pause")]
    assert compare_nodes(TOPOLOGY, down) == [
        Difference("manager", "m1", "state down", CRITICAL),
        Difference("worker", "w2", "availability drain", WARNING),
        Difference("database", "d1", "availability pause", CRITICAL),
    ]


def test_relabelled_unlabelled_wrong_role_and_short_tiers():
    nodes = [node("m1", "manager", role="manager"), node("w1", "worker", wordpress="false"),
             node("w2", None), node("d1", "database", role="manager")]
    assert compare_nodes(TOPOLOGY, nodes) == [
        Difference("worker", "w1", "label wordpress=false, topology says true"),
        Difference("", "w2", "no tier label"),
        Difference("database", "d1", "role manager, topology says worker"),
        Difference("worker", "", "1 of 2 nodes"),
    ]
    assert compare_nodes(TOPOLOGY, HEALTHY[1:])[-1] == Difference("manager", "", "0 of 1 nodes", CRITICAL)


def test_node_changes_name_what_changed_and_the_tiers_touched():
    before = {n.id: n.row() for n in HEALTHY}
    after = {n.id: n.row() for n in [node("m1", "manager", role="manager", availability="drain"),
                                     node("w1", "database"), HEALTHY[2], node("n9", "worker", wordpress="true")]}
    assert node_changes(before, after) == [
        ("d1 left", {"database"}),
        ("m1: availability active → drain", {"manager"}),
        ("n9 joined", {"worker"}),
        ("w1: labels tier=worker,wordpress=true → tier=database", {"worker", "database"}),
    ]
    assert node_changes(before, before) == []


MASTER = {"ip": "10.0.0.5", "port": 6379, "flags": "master", "num-other-sentinels": 2, "quorum": 2}
CACHE = CacheConfig(redis="10.0.0.5:6379", sentinel="s:26379", replicas=2, varnish_health_url="http://v/varnish-health")


def test_cache_judgement():
    ok = judge_cache(CACHE, MASTER, {"role": "master", "connected_slaves": 2}, None)
    assert not ok.failures and not ok.warnings and ok.facts["sentinels"] == "3"
    failed_over = judge_cache(CACHE, {**MASTER, "ip": "10.0.0.6"}, {"role": "master", "connected_slaves": 1}, None)
    assert failed_over.warnings == ["Sentinel failed over: master is 10.0.0.6:6379, configuration says 10.0.0.5:6379",
                                    "Redis master has 1 of 2 replicas"]
    down = judge_cache(CACHE, {**MASTER, "flags": "master,s_down,o_down"}, "Redis at 10.0.0.5:6379: refused", "v down")
    assert down.failures == ["Sentinel sees master wpfarm at 10.0.0.5:6379 down (master,s_down,o_down)",
                             "Redis at 10.0.0.5:6379: refused", "Varnish health: v down"]


def gluster_xml(*statuses):
    nodes = "".join(f"<node><hostname>h{i}</hostname><path>/b{i}</path><status>{s}</status></node>"
                    for i, s in enumerate(statuses))
    shd = "<node><hostname>Self-heal Daemon</hostname><path>localhost</path><status>1</status></node>"
    return f"<cliOutput><opRet>0</opRet><volStatus><volumes><volume>{nodes}{shd}</volume></volumes></volStatus></cliOutput>"


def test_gluster_judgement():
    assert not judge_gluster("v", gluster_xml(1, 1), 2).warnings
    assert judge_gluster("v", gluster_xml(1, 0), 2).warnings == ["volume v: bricks offline: h1:/b1"]
    assert judge_gluster("v", gluster_xml(0, 0), 2).failures == ["volume v: every brick offline (h0:/b0, h1:/b1)"]
    stopped = "<cliOutput><opRet>-1</opRet><opErrstr>Volume v is not started</opErrstr></cliOutput>"
    assert judge_gluster("v", stopped, 2).failures == ["GlusterFS: Volume v is not started"]
