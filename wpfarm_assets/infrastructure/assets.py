"""The farm's infrastructure as assets (group "infrastructure"), upstream of the site assets:
database_tier → database_dump, storage_tier → file_archive.

Each asset records what it found. A tier that cannot serve fails its materialization with the
reason; a degraded one materializes and fails its `healthy` check at WARN (droplets and Swarm nodes
that differ from the topology fail `matches_topology`, at ERROR when a manager or database node is
down). What is not configured is reported as not checked. The tiers are independent roots: one
unreachable API must not skip the others' checks in the same run.
"""

from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from resources.digitalocean import DigitalOceanError, DigitalOceanResource
from resources.mariadb import MariaDBResource
from resources.redis import RedisError, RedisResource
from resources.ssh import CommandError, NodeResource
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.core.config import FarmConfig
from wpfarm_assets.core.topology import CRITICAL, Difference, compare_droplets, compare_nodes
from wpfarm_assets.infrastructure.tiers import (
    TierHealth,
    cache_health,
    database_health,
    monitoring_health,
    storage_health,
)

HEALTHY, MATCHES = "healthy", "matches_topology"
T = TypeVar("T")


def tier_result(tier: str, health: TierHealth) -> dg.MaterializeResult:
    if health.failures:
        raise dg.Failure(f"{tier} tier down: " + "; ".join(health.failures), metadata=health.facts, allow_retries=False)
    return dg.MaterializeResult(
        metadata=health.facts,
        check_results=[dg.AssetCheckResult(
            check_name=HEALTHY, passed=not health.warnings, severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(health.warnings) or f"{tier} tier healthy",
            metadata={"warnings": dg.MetadataValue.json(health.warnings)})],
    )


def fetched(call: Callable[[], T]) -> T:
    """`call()`, with DigitalOcean and Docker API errors turned into a step failure that says why."""
    try:
        return call()
    except (DigitalOceanError, SwarmError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


def not_checked(why: str, check: str = HEALTHY) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"checked": False, "why": why},
                                check_results=[dg.AssetCheckResult(check_name=check, passed=True, description=f"not checked: {why}")])


def table(rows: list[dict[str, str]], columns: list[str]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(records=[dg.TableRecord({c: str(r.get(c, "")) for c in columns}) for r in rows],
                                  schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]))


def topology_result(rows: list[dict], columns: list[str], differences: list[Difference]) -> dg.MaterializeResult:
    problems = [{"tier": d.tier, "name": d.name, "problem": d.problem, "severity": d.severity} for d in differences]
    critical = any(d.severity == CRITICAL for d in differences)
    return dg.MaterializeResult(
        metadata={"count": len(rows), "table": table(rows, columns), "differences": len(differences)},
        check_results=[dg.AssetCheckResult(
            check_name=MATCHES, passed=not differences,
            severity=dg.AssetCheckSeverity.ERROR if critical else dg.AssetCheckSeverity.WARN,
            description="; ".join(f"{d.name or d.tier}: {d.problem}" for d in differences) or "as the topology says",
            metadata={"differences": table(problems, ["tier", "name", "problem", "severity"])})],
    )


@dg.asset(group_name="infrastructure", kinds={"digitalocean"}, check_specs=[dg.AssetCheckSpec(MATCHES, asset="droplets")])
def droplets(farm: dg.ResourceParam[FarmConfig], digitalocean: DigitalOceanResource) -> dg.MaterializeResult:
    """The farm's droplets (tagged with the project) against the topology: missing, extra, wrong size or region."""
    if not digitalocean.token:
        return not_checked("no DigitalOcean token (DIGITALOCEAN_TOKEN)", MATCHES)
    found = fetched(digitalocean.droplets)
    topology = farm.topology
    tier_of = {name: tier for tier in topology.tiers for name in topology.droplet_names(tier)}
    rows = [{"name": d.name, "tier": tier_of.get(d.name, ""), "size": d.size, "region": d.region,
             "status": d.status, "ip": d.ip or ""} for d in sorted(found, key=lambda d: d.name)]
    return topology_result(rows, ["name", "tier", "size", "region", "status", "ip"], compare_droplets(topology, found))


@dg.asset(group_name="infrastructure", kinds={"docker"}, check_specs=[dg.AssetCheckSpec(MATCHES, asset="swarm_nodes")])
def swarm_nodes(farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource) -> dg.MaterializeResult:
    """Swarm nodes from a manager's Docker API (role, availability, state, engine, labels, tier) against the topology."""
    if not swarm.docker_host:
        return not_checked("no Swarm configured (swarm.docker_host)", MATCHES)
    nodes = fetched(swarm.nodes)
    rows = [n.row() for n in sorted(nodes, key=lambda n: n.hostname)]
    columns = ["hostname", "tier", "role", "availability", "state", "engine", "labels"]
    return topology_result(rows, columns, compare_nodes(farm.topology, nodes))


@dg.asset(group_name="infrastructure", kinds={"mariadb"}, check_specs=[dg.AssetCheckSpec(HEALTHY, asset="database_tier")])
def database_tier(farm: dg.ResourceParam[FarmConfig], mariadb: MariaDBResource, database_node: NodeResource) -> dg.MaterializeResult:
    """The database tier as the backups see it: MariaDB reachable, and (on Galera) Primary, ready, Synced."""
    db = mariadb.client(database_node.runner())
    try:
        health = database_health(db, farm.database.nodes)
    except CommandError as exc:
        raise dg.Failure(f"database tier unreachable at {mariadb.host}:{mariadb.port}: {exc}", allow_retries=False) from None
    return tier_result("database", health)


@dg.asset(group_name="infrastructure", kinds={"redis"}, check_specs=[dg.AssetCheckSpec(HEALTHY, asset="cache_tier")])
def cache_tier(farm: dg.ResourceParam[FarmConfig], redis: RedisResource) -> dg.MaterializeResult:
    """The cache tier: Sentinel's master up, the Redis master with its replicas, Varnish's health URL."""
    cache = farm.cache
    if not (cache.redis or cache.sentinel or cache.varnish_health_url):
        return not_checked("no cache tier configured (cache:)")
    try:
        return tier_result("cache", cache_health(cache, redis))
    except RedisError as exc:
        raise dg.Failure(f"cache tier down: {exc}", allow_retries=False) from None


@dg.asset(group_name="infrastructure", kinds={"glusterfs"}, check_specs=[dg.AssetCheckSpec(HEALTHY, asset="storage_tier")])
def storage_tier(farm: dg.ResourceParam[FarmConfig], storage_node: NodeResource) -> dg.MaterializeResult:
    """The storage tier: the GlusterFS volume holding wp-content started, its bricks online."""
    storage = farm.storage
    try:
        return tier_result("storage", storage_health(storage, storage_node.runner()))
    except (CommandError, OSError) as exc:
        raise dg.Failure(f"storage tier unreachable: {exc}", allow_retries=False) from None


@dg.asset(group_name="infrastructure", kinds={"prometheus"}, check_specs=[dg.AssetCheckSpec(HEALTHY, asset="monitoring_tier")])
def monitoring_tier(farm: dg.ResourceParam[FarmConfig]) -> dg.MaterializeResult:
    """The monitoring tier: Prometheus and Alertmanager ready, Prometheus's scrape targets up."""
    config = farm
    if not (config.monitoring.prometheus_url or config.alerts.alertmanager_url):
        return not_checked("no Prometheus or Alertmanager configured")
    return tier_result("monitoring", monitoring_health(config.monitoring.prometheus_url, config.alerts.alertmanager_url))


TIER_ASSETS = {"database": database_tier, "cache": cache_tier, "storage": storage_tier, "monitoring": monitoring_tier}
infrastructure_assets = [droplets, swarm_nodes, *TIER_ASSETS.values()]


check_infrastructure_job = dg.define_asset_job(
    "check_infrastructure",
    selection=dg.AssetSelection.groups("infrastructure"),
    description="Droplets and Swarm nodes against the topology, and the health of every tier.",
)
