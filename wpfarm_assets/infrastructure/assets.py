"""The farm's infrastructure as assets (group "infrastructure"), upstream of the site assets:
droplets → swarm_nodes → the tiers; database_tier → database_dump, storage_tier → file_archive.

Each materialization records what was found and carries a data version that is a digest of it, so
re-checking every ten minutes never makes the backups downstream "unsynced": only a real change
does. Its check (`healthy`, `matches_topology`) says whether that is right: a degraded tier warns, a
tier that cannot serve or be reached fails its check at ERROR, with the reason. The step does not
fail (Dagster skips the steps downstream of a failed one, and one unreachable API must not stop the
other tiers from being checked). What is not configured is not in the definitions at all
(`not_configured`; its neighbours are wired past it): nothing that was not checked shows as
materialized or passed, and launching a backup never asks for an upstream nobody can check.
"""

import functools
import hashlib
import json
import os
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
    galera_health,
    monitoring_health,
    storage_health,
)

HEALTHY, MATCHES = "healthy", "matches_topology"
# Facts that change on every look, not with the tier's state (per node: "flow_control_paused/<node>").
VOLATILE = {"uptime", "threads_connected", "flow_control_paused"}


def not_configured(config: FarmConfig) -> dict[str, str]:
    """The parts this farm gives wpfarm no way to check, with why. They are left out of the definitions."""
    cache, why = config.cache, {}
    if not os.environ.get("DIGITALOCEAN_TOKEN"):
        why["droplets"] = "no DigitalOcean token (DIGITALOCEAN_TOKEN)"
    if not config.swarm.docker_host:
        why["swarm_nodes"] = "no Swarm (swarm.docker_host)"
    if not (cache.redis or cache.sentinel or cache.varnish_health_url):
        why["cache_tier"] = "no cache tier (cache:)"
    if not config.storage.gluster_volume:
        why["storage_tier"] = "no GlusterFS volume (storage.gluster_volume): files on local disk"
    if not (config.monitoring.prometheus_url or config.alerts.alertmanager_url):
        why["monitoring_tier"] = "no Prometheus or Alertmanager (monitoring.prometheus_url, alerts.alertmanager_url)"
    return why


def checked(key: str, check: str, facts: dict, passed: bool, severity: dg.AssetCheckSeverity, description: str,
            check_metadata: dict | None = None) -> dg.MaterializeResult:
    """What was found, with a data version that is a digest of it (unchanged state: same version)."""
    state = {k: str(v) for k, v in facts.items() if k.split("/")[0] not in VOLATILE}
    version = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return dg.MaterializeResult(
        asset_key=key, metadata=facts, data_version=dg.DataVersion(version),
        check_results=[dg.AssetCheckResult(asset_key=key, check_name=check, passed=passed, severity=severity,
                                           description=description, metadata=check_metadata or {})])


def tier_result(tier: str, health: TierHealth) -> Iterator[dg.MaterializeResult]:
    """A tier's materialization; a tier that cannot serve fails its check at ERROR."""
    key = f"{tier}_tier"
    if health.failures:
        reason = f"{tier} tier down: " + "; ".join(health.failures)
        yield checked(key, HEALTHY, {**health.facts, "state": "down"}, False, dg.AssetCheckSeverity.ERROR, reason)
        return
    yield checked(key, HEALTHY, health.facts, not health.warnings, dg.AssetCheckSeverity.WARN,
                  "; ".join(health.warnings) or f"{tier} tier healthy",
                  {"warnings": dg.MetadataValue.json(health.warnings)})


def unreachable(key: str, check: str, reason: str) -> Iterator[dg.MaterializeResult]:
    """A configured part that cannot be reached: its check fails at ERROR with the reason. The step
    itself succeeds: a failed step would skip the assets downstream of it in the same run."""
    yield checked(key, check, {"state": "unreachable", "reason": reason}, False, dg.AssetCheckSeverity.ERROR, reason)


def table(rows: list[dict[str, str]], columns: list[str]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(records=[dg.TableRecord({c: str(r.get(c, "")) for c in columns}) for r in rows],
                                  schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]))


def topology_result(key: str, rows: list[dict], columns: list[str],
                    differences: list[Difference]) -> dg.MaterializeResult:
    problems = [{"tier": d.tier, "name": d.name, "problem": d.problem, "severity": d.severity} for d in differences]
    critical = any(d.severity == CRITICAL for d in differences)
    return checked(key, MATCHES, {"count": len(rows), "table": table(rows, columns), "differences": len(differences)},
                   not differences, dg.AssetCheckSeverity.ERROR if critical else dg.AssetCheckSeverity.WARN,
                   "; ".join(f"{d.name or d.tier}: {d.problem}" for d in differences) or "as the topology says",
                   {"differences": table(problems, ["tier", "name", "problem", "severity"])})


def infrastructure(key: str, check: str, kinds: set[str], deps: tuple[str, ...] = ()):
    """An infrastructure asset with its one check. Its step never fails (Dagster would skip the
    assets downstream of it): an API that cannot be reached (a WpfarmError, in its own
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

        return dg.asset(name=key, deps=list(deps), kinds=kinds, description=fn.__doc__, group_name="infrastructure",
                        check_specs=[dg.AssetCheckSpec(check, asset=key, description=CHECKS[check])])(observe)
    return decorate


CHECKS = {HEALTHY: "The tier can serve the backups and sites; a degraded tier warns, a tier down fails at ERROR.",
          MATCHES: "What runs equals the configured topology (missing, extra, wrong size or role); a manager or "
                   "database node down fails at ERROR."}


@infrastructure("droplets", MATCHES, {"digitalocean"})
def droplets(farm: dg.ResourceParam[FarmConfig], digitalocean: DigitalOceanResource):
    """The farm's droplets (tagged with the project) against the topology: missing, extra, wrong size or region."""
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
    nodes = swarm.nodes()
    rows = [n.row() for n in sorted(nodes, key=lambda n: n.hostname)]
    columns = ["hostname", "tier", "role", "availability", "state", "engine", "labels"]
    yield topology_result("swarm_nodes", rows, columns, compare_nodes(farm.topology, nodes))


@infrastructure("database_tier", HEALTHY, {"mariadb"}, deps=("swarm_nodes",))
def database_tier(farm: dg.ResourceParam[FarmConfig], mariadb: MariaDBResource, database_node: NodeResource):
    """The database tier as the backups see it: MariaDB reachable, and (on Galera) Primary, ready, Synced;
    with database.galera_nodes, every node: its state, flow control, binary logging and GTID mode."""
    if farm.database.galera_nodes:
        health = galera_health([mariadb.node(a) for a in farm.database.galera_nodes], farm.database.nodes,
                               farm.database.pitr_enabled)
        yield from tier_result("database", health)
        return
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
    try:
        health = cache_health(farm.cache, redis)
    except RedisError as exc:
        yield from unreachable("cache_tier", HEALTHY, f"cache tier down: {exc}")
        return
    yield from tier_result("cache", health)


@infrastructure("storage_tier", HEALTHY, {"glusterfs"}, deps=("swarm_nodes",))
def storage_tier(farm: dg.ResourceParam[FarmConfig], storage_node: NodeResource):
    """The storage tier: the GlusterFS volume holding wp-content started, its bricks online."""
    try:
        health = storage_health(farm.storage, storage_node.runner())
    except (CommandError, OSError) as exc:
        yield from unreachable("storage_tier", HEALTHY, f"storage tier unreachable: {exc}")
        return
    yield from tier_result("storage", health)


@infrastructure("monitoring_tier", HEALTHY, {"prometheus"}, deps=("swarm_nodes",))
def monitoring_tier(farm: dg.ResourceParam[FarmConfig]):
    """The monitoring tier: Prometheus and Alertmanager ready, Prometheus's scrape targets up."""
    yield from tier_result("monitoring", monitoring_health(farm.monitoring.prometheus_url,
                                                           farm.alerts.alertmanager_url))


TIER_ASSETS = {"database": database_tier, "cache": cache_tier, "storage": storage_tier, "monitoring": monitoring_tier}
infrastructure_assets = [droplets, swarm_nodes, *TIER_ASSETS.values()]


def wired_past(assets: list[dg.AssetsDefinition], absent: set[str]) -> list[dg.AssetsDefinition]:
    """The assets but the absent ones. Within the infrastructure, a dep on an absent part becomes
    that part's own deps, so the lineage stays whole (no Swarm: the tiers hang from the droplets).
    Elsewhere it is dropped: a backup hangs from the tier it needs, or from no infrastructure at
    all (not from the droplets, whose every change would make it "unsynced")."""
    deps_of = {spec.key: list(spec.deps) for a in assets for spec in a.specs}

    def gone(dep: dg.AssetDep) -> bool:
        return dep.asset_key.to_user_string() in absent

    def present(deps: list[dg.AssetDep]) -> list[dg.AssetDep]:
        found = []
        for dep in deps:
            found += present(deps_of.get(dep.asset_key, [])) if gone(dep) else [dep]
        return list({d.asset_key: d for d in found}.values())

    def rewired(spec: dg.AssetSpec) -> dg.AssetSpec:
        keep = present if spec.group_name == "infrastructure" else (lambda deps: [d for d in deps if not gone(d)])
        return spec.replace_attributes(deps=keep(list(spec.deps)))

    return [a.map_asset_specs(rewired) if any(gone(d) for spec in a.specs for d in spec.deps) else a
            for a in assets if not {k.to_user_string() for k in a.keys} <= absent]


def check_infrastructure_job(absent: dict[str, str]):
    unchecked = "; ".join(f"{key}: {why}" for key, why in absent.items())
    return dg.define_asset_job(
        "check_infrastructure", selection=dg.AssetSelection.groups("infrastructure"),
        description="Check the droplets and Swarm nodes against the topology, and the health of every tier."
                    + (f" Not checked on this farm, as not configured ({unchecked})." if unchecked else ""))
