"""Health of the farm's infrastructure tiers, as plain functions over what the tier reports.

Database tier: MariaDB, alone or in a Galera cluster (through ProxySQL in production). A Galera node
is healthy when its cluster is Primary, it is ready and Synced, and the cluster has the expected size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resources.mariadb import MariaDB

GALERA_STATUS = ("wsrep_cluster_size", "wsrep_cluster_status", "wsrep_ready", "wsrep_local_state_comment")


@dataclass
class TierHealth:
    facts: dict[str, str]
    failures: list[str] = field(default_factory=list)  # the tier cannot serve: backups will fail
    warnings: list[str] = field(default_factory=list)  # degraded: backups work, slower or at risk


def judge_database(status: dict[str, str], expected_nodes: int) -> TierHealth:
    """Judge `SHOW GLOBAL STATUS` values and the `wsrep_on` variable. (Debian's server reports
    wsrep_* status, Disconnected, even with Galera off: only wsrep_on says whether it is a cluster.)"""
    if status.get("wsrep_on", "OFF") != "ON":
        return TierHealth({"mode": "standalone", **status})
    health = TierHealth({"mode": "galera", **status})
    if status["wsrep_cluster_status"] != "Primary":
        health.failures.append(f"cluster is {status['wsrep_cluster_status']}, not Primary (split brain or quorum lost)")
    if status.get("wsrep_ready") != "ON":
        health.failures.append("node is not ready (wsrep_ready OFF)")
    state = status.get("wsrep_local_state_comment", "")
    if state != "Synced":
        health.warnings.append(f"node is {state or 'in an unknown state'}, not Synced")
    size = int(status.get("wsrep_cluster_size") or 0)
    if size < expected_nodes:
        health.warnings.append(f"cluster has {size} of {expected_nodes} nodes")
    return health


def database_health(db: MariaDB, expected_nodes: int) -> TierHealth:
    names = ", ".join(f"'{n}'" for n in (*GALERA_STATUS, "Uptime", "Threads_connected"))
    rows = db.query(f"SHOW GLOBAL VARIABLES WHERE Variable_name = 'wsrep_on'; "
                    f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    status = {name.lower(): value for name, value in rows}
    health = judge_database(status, expected_nodes)
    health.facts["version"] = db.version()
    return health
