"""Health of the farm's infrastructure tiers, as plain functions over what the tier reports.

Each tier is judged into failures (the tier cannot serve) and warnings (degraded):
- database: MariaDB, alone or in a Galera cluster (through ProxySQL in production): Primary, ready,
  Synced, and the expected cluster size;
- cache: Sentinel's master up, Redis master with its replicas, Varnish's health URL;
- storage: the GlusterFS volume started with its bricks online (over SSH on a storage node);
- monitoring: Prometheus and Alertmanager ready, Prometheus's scrape targets up.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from xml.etree import ElementTree

from resources.mariadb import MariaDB, Node, NodeError, NodeStatus
from resources.redis import RedisError, RedisResource
from resources.ssh import Runner, run
from wpfarm_assets.core.config import CacheConfig, StorageConfig

GALERA_STATUS = ("wsrep_cluster_size", "wsrep_cluster_status", "wsrep_ready", "wsrep_local_state_comment")


@dataclass
class TierHealth:
    facts: dict[str, str]
    failures: list[str] = field(default_factory=list)  # the tier cannot serve: backups will fail
    warnings: list[str] = field(default_factory=list)  # degraded: backups work, slower or at risk


def judge_database(status: dict[str, str], expected_nodes: int) -> TierHealth:
    """Judge `SHOW GLOBAL STATUS` values and the `wsrep_on` variable. (Debian's server reports
    wsrep_* status, Disconnected, even with Galera off: only wsrep_on says whether it is a cluster.)"""
    if status.get("wsrep_on", "OFF") != "ON":  # the idle wsrep_* status would read as a cluster down
        return TierHealth({"mode": "standalone", **{k: v for k, v in status.items() if not k.startswith("wsrep_")}})
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


def judge_galera(nodes: dict[str, NodeStatus | str], expected_nodes: int, pitr: bool) -> TierHealth:
    """Judge every node of database.galera_nodes: its status, or why it could not be read. No node
    that can serve is a failure; a node down, donor or joining, flow control pausing the cluster,
    or (with point-in-time recovery on) binary logs that cannot serve it are warnings saying why."""
    health = TierHealth({"mode": "galera"})
    serving = [s for s in nodes.values() if not isinstance(s, str) and s.usable]
    for address, status in nodes.items():
        if isinstance(status, str):
            health.facts[address] = f"unreachable: {status}"
            health.warnings.append(f"node {address} does not answer: {status}")
            continue
        health.facts[address] = (f"{status.state}, cluster of {status.cluster_size}, binlog "
                                 f"{'ON' if status.log_bin else 'OFF'} {status.binlog_format}, wsrep_gtid_mode "
                                 f"{'ON' if status.wsrep_gtid_mode else 'OFF'}")
        health.facts[f"flow_control_paused/{address}"] = f"{status.flow_control_paused:.3f}"
        if not status.usable:
            health.warnings.append(f"node {address} is {status.state}, not Synced")
        if status.flow_control_paused > 0.1:
            health.warnings.append(f"flow control paused node {address} {status.flow_control_paused:.0%} of the time "
                                   "(a slow node holds back every write)")
        if pitr and (problem := status.pitr_problem):
            health.warnings.append(f"point-in-time recovery unavailable from {address}: {problem}")
    if not serving:
        health.failures.append("no node of database.galera_nodes is Synced: dumps and binary logs cannot be read")
    elif (size := max(s.cluster_size for s in serving)) < expected_nodes:
        health.warnings.append(f"cluster has {size} of {expected_nodes} nodes")
    health.facts["cluster_size"] = str(max((s.cluster_size for s in serving), default=0))
    return health


def galera_health(nodes: list[Node], expected_nodes: int, pitr: bool) -> TierHealth:
    statuses: dict[str, NodeStatus | str] = {}
    for node in nodes:
        with node:
            try:
                statuses[node.address] = node.status()
            except NodeError as exc:
                statuses[node.address] = str(exc).split(": ", 1)[-1]
    return judge_galera(statuses, expected_nodes, pitr)


def http_status(url: str, timeout: float = 5) -> str | None:
    """None if `url` answers 2xx, else why not (status or connection error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {getattr(exc, 'reason', exc)}"


def judge_cache(cache: CacheConfig, master: dict | None, replication: dict | str | None,
                varnish: str | None) -> TierHealth:
    """`master`: Sentinel's view of the master (None: no Sentinel configured); `replication`: INFO
    replication of the master, or why it could not be read; `varnish`: http_status of its health URL."""
    health = TierHealth({})
    if master is not None:
        address = f"{master['ip']}:{master['port']}"
        health.facts.update({"sentinel_master": address, "sentinel_flags": master["flags"],
                             "sentinels": str(master.get("num-other-sentinels", 0) + 1),
                             "quorum": str(master.get("quorum"))})
        if "s_down" in master["flags"] or "o_down" in master["flags"]:
            health.failures.append(f"Sentinel sees master {cache.master_name} at {address} down ({master['flags']})")
        elif cache.redis and address != cache.redis:
            health.warnings.append(f"Sentinel failed over: master is {address}, configuration says {cache.redis}")
    if isinstance(replication, str):
        health.failures.append(replication)
    elif replication is not None:
        health.facts.update({"redis_role": replication["role"], "replicas": str(replication.get("connected_slaves", 0))})
        if replication["role"] != "master":
            health.failures.append(f"Redis master is a {replication['role']} (replicates {replication.get('master_host')})")
        elif replication.get("connected_slaves", 0) < cache.replicas:
            health.warnings.append(f"Redis master has {replication.get('connected_slaves', 0)} of {cache.replicas} replicas")
    if cache.varnish_health_url:
        health.facts["varnish"] = "ok" if varnish is None else varnish
        if varnish is not None:
            health.failures.append(f"Varnish health: {varnish}")
    return health


def cache_health(cache: CacheConfig, redis: RedisResource) -> TierHealth:
    master = redis.sentinel_master(cache.sentinel, cache.master_name) if cache.sentinel else None
    address = f"{master['ip']}:{master['port']}" if master else cache.redis
    replication = None
    if address:
        try:
            replication = redis.replication(address)
        except RedisError as exc:
            replication = str(exc)
    varnish = http_status(cache.varnish_health_url) if cache.varnish_health_url else None
    return judge_cache(cache, master, replication, varnish)


def judge_gluster(volume: str, status_xml: str, expected_bricks: int) -> TierHealth:
    """`gluster volume status VOLUME --xml`: the volume started and its bricks online. Some bricks
    offline is a warning (replicas still serve); all offline, or the volume stopped, a failure."""
    root = ElementTree.fromstring(status_xml)
    if root.findtext("opRet") != "0":
        return TierHealth({"volume": volume}, failures=[f"GlusterFS: {root.findtext('opErrstr')}"])
    bricks = [n for n in root.iter("node") if (n.findtext("path") or "").startswith("/")]
    offline = [f"{n.findtext('hostname')}:{n.findtext('path')}" for n in bricks if n.findtext("status") != "1"]
    health = TierHealth({"volume": volume, "bricks": str(len(bricks)), "bricks_online": str(len(bricks) - len(offline))})
    if bricks and len(offline) == len(bricks):
        health.failures.append(f"volume {volume}: every brick offline ({', '.join(offline)})")
    elif offline:
        health.warnings.append(f"volume {volume}: bricks offline: {', '.join(offline)}")
    if len(bricks) < expected_bricks:
        health.warnings.append(f"volume {volume} has {len(bricks)} of {expected_bricks} bricks")
    return health


def storage_health(storage: StorageConfig, runner: Runner) -> TierHealth:
    if not storage.gluster_volume:
        return TierHealth({"mode": "local disk (no GlusterFS volume configured)"})
    out = run(runner, ["gluster", "--mode=script", "volume", "status", storage.gluster_volume, "--xml"])
    return judge_gluster(storage.gluster_volume, out, storage.bricks)


def monitoring_health(prometheus_url: str | None, alertmanager_url: str | None) -> TierHealth:
    """Prometheus and Alertmanager ready (/-/ready); Prometheus scrape targets that are down warn."""
    health = TierHealth({})
    for name, url in (("prometheus", prometheus_url), ("alertmanager", alertmanager_url)):
        if not url:
            continue
        problem = http_status(f"{url.rstrip('/')}/-/ready")
        health.facts[name] = "ready" if problem is None else problem
        if problem:
            health.failures.append(f"{name} not ready: {problem}")
    if prometheus_url and health.facts.get("prometheus") == "ready":
        with urllib.request.urlopen(f"{prometheus_url.rstrip('/')}/api/v1/targets?state=active", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        down = sorted(f"{t['labels'].get('job')}/{t['labels'].get('instance')}" for t in targets if t["health"] == "down")
        health.facts["targets"] = str(len(targets))
        if down:
            health.warnings.append(f"{len(down)} of {len(targets)} scrape targets down: {', '.join(down)}")
    return health
