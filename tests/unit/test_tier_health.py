from wpfarm_assets.infrastructure.tiers import judge_database

SYNCED = {"wsrep_on": "ON", "wsrep_cluster_size": "3", "wsrep_cluster_status": "Primary", "wsrep_ready": "ON",
          "wsrep_local_state_comment": "Synced"}


def test_a_standalone_server_is_healthy_whatever_its_idle_wsrep_status_says():
    idle = {"wsrep_on": "OFF", "wsrep_cluster_status": "Disconnected", "wsrep_ready": "OFF", "uptime": "10"}
    health = judge_database(idle, expected_nodes=3)
    assert health.facts["mode"] == "standalone" and not health.failures and not health.warnings
    assert health.facts == {"mode": "standalone", "uptime": "10"}  # no "Disconnected" on a healthy server


def test_a_synced_primary_cluster_of_the_expected_size_is_healthy():
    health = judge_database(SYNCED, expected_nodes=3)
    assert health.facts["mode"] == "galera" and not health.failures and not health.warnings


def test_a_non_primary_or_unready_node_fails():
    assert "not Primary" in judge_database({**SYNCED, "wsrep_cluster_status": "non-Primary"}, 3).failures[0]
    assert "not ready" in judge_database({**SYNCED, "wsrep_ready": "OFF"}, 3).failures[0]


def test_a_desynced_node_or_a_short_cluster_warns():
    desynced = judge_database({**SYNCED, "wsrep_local_state_comment": "Donor/Desynced"}, 3)
    assert not desynced.failures and desynced.warnings == ["node is Donor/Desynced, not Synced"]
    short = judge_database({**SYNCED, "wsrep_cluster_size": "2"}, 3)
    assert short.warnings == ["cluster has 2 of 3 nodes"]


def galera_node(address: str, state: str = "Synced", size: int = 3, paused: float = 0.0, log_bin: bool = True):
    from resources.mariadb import NodeStatus

    return NodeStatus(address=address, state=state, cluster_size=size, flow_control_paused=paused, log_bin=log_bin,
                      log_slave_updates=True, binlog_format="ROW", gtid_domain=100, wsrep_gtid_mode=True,
                      gtid_binlog_pos="100-1-9")


def test_galera_nodes_are_judged_one_by_one():
    from wpfarm_assets.infrastructure.tiers import judge_galera

    healthy = judge_galera({"a:1": galera_node("a:1"), "b:1": galera_node("b:1"), "c:1": galera_node("c:1")}, 3, True)
    assert not healthy.failures and not healthy.warnings and healthy.facts["cluster_size"] == "3"
    degraded = judge_galera({"a:1": "Can't connect (error 2003)", "b:1": galera_node("b:1", "Donor/Desynced", 2),
                             "c:1": galera_node("c:1", size=2, paused=0.4, log_bin=False)}, 3, True)
    assert not degraded.failures
    assert degraded.warnings == [
        "node a:1 does not answer: Can't connect (error 2003)", "node b:1 is Donor/Desynced, not Synced",
        "flow control paused node c:1 40% of the time (a slow node holds back every write)",
        "point-in-time recovery unavailable from c:1: binary logging is off on c:1 (log_bin)",
        "cluster has 2 of 3 nodes"]
    down = judge_galera({"a:1": "refused", "b:1": galera_node("b:1", "Joining", 2)}, 3, False)
    assert down.failures == ["no node of database.galera_nodes is Synced: dumps and binary logs cannot be read"]
