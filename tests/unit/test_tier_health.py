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
