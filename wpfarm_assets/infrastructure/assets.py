"""The farm's infrastructure as observed assets (group "infrastructure"), upstream of the site
assets: droplets → swarm_nodes → the tiers; database_tier → database_dump, storage_tier → file_archive.

They are observations, not materializations: wpfarm watches the infrastructure, it does not
produce it. Each observation carries a data version that changes only when what it found changes,
so re-checking every ten minutes never makes the backups downstream "unsynced". Each records what
it found; its check (`healthy`, `matches_topology`) says whether that is right: a degraded tier
warns, a tier that cannot serve or be reached fails its check at ERROR, with the reason. The step
does not fail (Dagster skips the steps downstream of a failed one, and one unreachable API must not
stop the other tiers from being checked). What is not configured is observed as "not checked" (its
metadata says why) with no check result: nothing that was not checked shows as passed.
"""

import functools
import hashlib
import json
import warnings
from collections.abc import Iterator

import dagster as dg

from resources.digitalocean import DigitalOceanResource
from resources.mariadb import MariaDBResource
from resources.redis import RedisError, RedisResource
from resources.ssh import CommandError, NodeResource
from resources.swarm import SwarmResource
from wpfarm_assets.core.config import FarmConfig
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.topology import CRITICAL, Difference, compare_droplets, compare_nodes
from wpfarm_assets.infrastructure.tiers import (
    TierHealth,
    cache_health,
    database_health,
    monitoring_health,
    storage_health,
)

HEALTHY, MATCHES = "healthy", "matches_topology"
VOLATILE = {"uptime", "threads_connected"}  # facts that change on every look, not with the tier's state
# Observed source assets with checks are what Dagster offers for watched state; the label is noise here.
warnings.filterwarnings("ignore", message=".*multi_observable_source_asset.*", category=dg.BetaWarning)


def observed(key: str, check: str, facts: dict, passed: bool, severity: dg.AssetCheckSeverity, description: str,
             check_metadata: dict | None = None) -> dg.ObserveResult:
    """An observation whose data version is a digest of what was found (unchanged state: same version)."""
    state = {k: str(v) for k, v in facts.items() if k not in VOLATILE}
    version = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return dg.ObserveResult(
        asset_key=key, metadata={"checked": True, **facts}, data_version=dg.DataVersion(version),
        check_results=[dg.AssetCheckResult(asset_key=key, check_name=check, passed=passed, severity=severity,
                                           description=description, metadata=check_metadata or {})])


def tier_result(tier: str, health: TierHealth) -> Iterator[dg.ObserveResult]:
    """A tier's observation; a tier that cannot serve fails its check at ERROR."""
    key = f"{tier}_tier"
    if health.failures:
        reason = f"{tier} tier down: " + "; ".join(health.failures)
        yield observed(key, HEALTHY, {**health.facts, "state": "down"}, False, dg.AssetCheckSeverity.ERROR, reason)
        return
    yield observed(key, HEALTHY, health.facts, not health.warnings, dg.AssetCheckSeverity.WARN,
                   "; ".join(health.warnings) or f"{tier} tier healthy",
                   {"warnings": dg.MetadataValue.json(health.warnings)})


def unreachable(key: str, check: str, reason: str) -> Iterator[dg.ObserveResult]:
    """A configured part that cannot be reached: its check fails at ERROR with the reason. The step
    itself succeeds: a failed step would skip the observations downstream of it in the same run."""
    yield observed(key, check, {"state": "unreachable", "reason": reason}, False, dg.AssetCheckSeverity.ERROR, reason)


def not_checked(key: str, why: str) -> Iterator[dg.ObserveResult]:
    """What is not configured: observed as not checked (`not_checked`: why), with no check result.
    (Observed, not left out: the observations downstream of a step with no output are skipped.)"""
    yield dg.ObserveResult(asset_key=key, metadata={"checked": False, "not_checked": why},
                           data_version=dg.DataVersion("not-checked"))


def table(rows: list[dict[str, str]], columns: list[str]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(records=[dg.TableRecord({c: str(r.get(c, "")) for c in columns}) for r in rows],
                                  schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]))


def topology_result(key: str, rows: list[dict], columns: list[str], differences: list[Difference]) -> dg.ObserveResult:
    problems = [{"tier": d.tier, "name": d.name, "problem": d.problem, "severity": d.severity} for d in differences]
    critical = any(d.severity == CRITICAL for d in differences)
    return observed(key, MATCHES, {"count": len(rows), "table": table(rows, columns), "differences": len(differences)},
                    not differences, dg.AssetCheckSeverity.ERROR if critical else dg.AssetCheckSeverity.WARN,
                    "; ".join(f"{d.name or d.tier}: {d.problem}" for d in differences) or "as the topology says",
                    {"differences": table(problems, ["tier", "name", "problem", "severity"])})


def infrastructure(key: str, check: str, kinds: set[str], deps: tuple[str, ...] = ()):
    """An observed infrastructure asset with its one check. Its step never fails (Dagster would skip
    the observations downstream of it): an API that cannot be reached (a WpfarmError, in its own
    words) or an error nobody foresaw (named by its type) fails the check at ERROR."""
    def decorate(fn):
        @functools.wraps(fn)
        def observe(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except WpfarmError as exc:
                yield from unreachable(key, check, str(exc))
            except Exception as exc:  # noqa: BLE001 - reported as the check's failure, with its type
                yield from unreachable(key, check, f"{key}: {type(exc).__name__}: {exc}")

        return dg.multi_observable_source_asset(
            name=key, can_subset=True, group_name="infrastructure",
            specs=[dg.AssetSpec(key, deps=list(deps), kinds=kinds, description=fn.__doc__,
                                group_name="infrastructure")],
            check_specs=[dg.AssetCheckSpec(check, asset=key, description=CHECKS[check])],
        )(observe)
    return decorate


CHECKS = {HEALTHY: "The tier can serve the backups and sites; a degraded tier warns, a tier down fails at ERROR.",
          MATCHES: "What runs equals the configured topology (missing, extra, wrong size or role); a manager or "
                   "database node down fails at ERROR."}


@infrastructure("droplets", MATCHES, {"digitalocean"})
def droplets(farm: dg.ResourceParam[FarmConfig], digitalocean: DigitalOceanResource):
    """The farm's droplets (tagged with the project) against the topology: missing, extra, wrong size or region."""
    if not digitalocean.token:
        yield from not_checked("droplets", "no DigitalOcean token (DIGITALOCEAN_TOKEN)")
        return
    found = digitalocean.droplets()
    topology = farm.topology
    tier_of = {name: tier for tier in topology.tiers for name in topology.droplet_names(tier)}
    rows = [{"name": d.name, "tier": tier_of.get(d.name, ""), "size": d.size, "region": d.region,
             "status": d.status, "ip": d.ip or ""} for d in sorted(found, key=lambda d: d.name)]
    yield topology_result("droplets", rows, ["name", "tier", "size", "region", "status", "ip"],
                          compare_droplets(topology, found))


@infrastructure("swarm_nodes", MATCHES, {"docker"}, deps=("droplets",))
def swarm_nodes(farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource):
    """Swarm nodes from a manager's Docker API (role, availability, state, engine, labels, tier) against the topology."""
    if not swarm.docker_host:
        yield from not_checked("swarm_nodes", "no Swarm configured (swarm.docker_host)")
        return
    nodes = swarm.nodes()
    rows = [n.row() for n in sorted(nodes, key=lambda n: n.hostname)]
    columns = ["hostname", "tier", "role", "availability", "state", "engine", "labels"]
    yield topology_result("swarm_nodes", rows, columns, compare_nodes(farm.topology, nodes))


@infrastructure("database_tier", HEALTHY, {"mariadb"}, deps=("swarm_nodes",))
def database_tier(farm: dg.ResourceParam[FarmConfig], mariadb: MariaDBResource, database_node: NodeResource):
    """The database tier as the backups see it: MariaDB reachable, and (on Galera) Primary, ready, Synced."""
    db = mariadb.client(database_node.runner())
    try:
        health = database_health(db, farm.database.nodes)
    except CommandError as exc:
        yield from unreachable("database_tier", HEALTHY,
                               f"database tier unreachable at {mariadb.host}:{mariadb.port}: {exc}")
        return
    yield from tier_result("database", health)


@infrastructure("cache_tier", HEALTHY, {"redis"}, deps=("swarm_nodes",))
def cache_tier(farm: dg.ResourceParam[FarmConfig], redis: RedisResource):
    """The cache tier: Sentinel's master up, the Redis master with its replicas, Varnish's health URL."""
    cache = farm.cache
    if not (cache.redis or cache.sentinel or cache.varnish_health_url):
        yield from not_checked("cache_tier", "no cache tier configured (cache:)")
        return
    try:
        health = cache_health(cache, redis)
    except RedisError as exc:
        yield from unreachable("cache_tier", HEALTHY, f"cache tier down: {exc}")
        return
    yield from tier_result("cache", health)


@infrastructure("storage_tier", HEALTHY, {"glusterfs"}, deps=("swarm_nodes",))
def storage_tier(farm: dg.ResourceParam[FarmConfig], storage_node: NodeResource):
    """The storage tier: the GlusterFS volume holding wp-content started, its bricks online."""
    if not farm.storage.gluster_volume:
        yield from not_checked("storage_tier", "no GlusterFS volume configured (storage.gluster_volume): local disk")
        return
    try:
        health = storage_health(farm.storage, storage_node.runner())
    except (CommandError, OSError) as exc:
        yield from unreachable("storage_tier", HEALTHY, f"storage tier unreachable: {exc}")
        return
    yield from tier_result("storage", health)


@infrastructure("monitoring_tier", HEALTHY, {"prometheus"}, deps=("swarm_nodes",))
def monitoring_tier(farm: dg.ResourceParam[FarmConfig]):
    """The monitoring tier: Prometheus and Alertmanager ready, Prometheus's scrape targets up."""
    config = farm
    if not (config.monitoring.prometheus_url or config.alerts.alertmanager_url):
        yield from not_checked("monitoring_tier", "no Prometheus or Alertmanager configured")
        return
    yield from tier_result("monitoring", monitoring_health(config.monitoring.prometheus_url,
                                                           config.alerts.alertmanager_url))


TIER_ASSETS = {"database": database_tier, "cache": cache_tier, "storage": storage_tier, "monitoring": monitoring_tier}
infrastructure_assets = [droplets, swarm_nodes, *TIER_ASSETS.values()]


check_infrastructure_job = dg.define_asset_job(
    "check_infrastructure",
    selection=dg.AssetSelection.assets(*(a.key for a in infrastructure_assets)),
    description="Observe the droplets and Swarm nodes against the topology, and the health of every tier.",
)
