"""The farm as it is (droplets, Swarm nodes) against the farm as configured (`topology:`).

Plain data and plain comparisons; the resources fetch, the assets and the sensor report.
"""

from __future__ import annotations

from dataclasses import dataclass

from wpfarm_assets.core.config import TopologyConfig

WARNING, CRITICAL = "warning", "critical"
VITAL_TIERS = ("manager", "database")  # a node down here stops the farm or its backups


@dataclass(frozen=True)
class Droplet:
    id: int
    name: str
    size: str
    region: str
    status: str
    tags: tuple[str, ...]
    ip: str | None = None


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    role: str  # manager | worker
    availability: str  # active | pause | drain
    state: str  # ready | down | unknown | disconnected
    engine: str
    labels: tuple[tuple[str, str], ...]  # sorted (key, value) pairs

    @property
    def tier(self) -> str | None:
        return dict(self.labels).get("tier")

    def row(self) -> dict[str, str]:
        return {"hostname": self.hostname, "tier": self.tier or "", "role": self.role,
                "availability": self.availability, "state": self.state, "engine": self.engine,
                "labels": ",".join(f"{k}={v}" for k, v in self.labels)}


@dataclass(frozen=True)
class Difference:
    """One way the farm differs from its topology. `name` is a droplet or node host name, or ""
    for the tier as a whole (too few or too many)."""

    tier: str
    name: str
    problem: str
    severity: str = WARNING


def compare_droplets(topology: TopologyConfig, droplets: list[Droplet]) -> list[Difference]:
    """Missing, extra, and wrong size or region, by droplet name."""
    expected = {spec.name: spec for spec in droplet_specs(topology)}
    actual = {d.name: d for d in droplets}
    differences = []
    for name, spec in expected.items():
        droplet = actual.get(name)
        if droplet is None:
            differences.append(Difference(spec.tier, name, "missing"))
            continue
        if droplet.size != spec.size:
            differences.append(Difference(spec.tier, name, f"size {droplet.size}, topology says {spec.size}"))
        if droplet.region != spec.region:
            differences.append(Difference(spec.tier, name, f"region {droplet.region}, topology says {spec.region}"))
    for name in sorted(set(actual) - set(expected)):
        differences.append(Difference(_tier_of(topology, actual[name].tags), name, "extra: not in the topology"))
    return differences


def _tier_of(topology: TopologyConfig, tags: tuple[str, ...]) -> str:
    for tier in topology.tiers:
        if f"{topology.project}-{tier}" in tags:
            return tier
    return ""


def compare_nodes(topology: TopologyConfig, nodes: list[Node]) -> list[Difference]:
    """Per node: down, not active, wrong role, missing or changed labels (one Difference with every
    problem). Per tier: fewer or more nodes than the topology says. A manager or database node that
    is down or drained, or such a tier short of nodes, is critical; the rest are warnings."""
    differences = []
    for node in nodes:
        tier = node.tier or ""
        spec = topology.tiers.get(tier)
        if spec is None:
            why = "no tier label" if not tier else f"tier {tier!r} is not in the topology"
            differences.append(Difference(tier, node.hostname, why))
            continue
        problems = []
        if node.state != "ready":
            problems.append(f"state {node.state}")
        if node.availability != "active":
            problems.append(f"availability {node.availability}")
        down = bool(problems)
        if node.role != spec.role:
            problems.append(f"role {node.role}, topology says {spec.role}")
        labels = dict(node.labels)
        for key, value in topology.node_labels(tier).items():
            if labels.get(key) != value:
                problems.append(f"label {key}={labels.get(key, '(none)')}, topology says {value}")
        if problems:
            vital = down and (node.role == "manager" or tier in VITAL_TIERS)
            differences.append(Difference(tier, node.hostname, "; ".join(problems), CRITICAL if vital else WARNING))
    for tier, spec in topology.tiers.items():
        have = sum(1 for n in nodes if n.tier == tier)
        if have < spec.count:
            differences.append(Difference(tier, "", f"{have} of {spec.count} nodes",
                                          CRITICAL if tier in VITAL_TIERS else WARNING))
        elif have > spec.count:
            differences.append(Difference(tier, "", f"{have} nodes, topology says {spec.count}"))
    return differences


def node_changes(before: dict[str, dict], after: dict[str, dict]) -> list[tuple[str, set[str]]]:
    """What changed between two views of the Swarm ({node id: Node.row()}), each change with the
    tiers it touches (the node's tier before and after)."""
    changes = []
    for node_id in sorted(set(before) | set(after)):
        old, new = before.get(node_id), after.get(node_id)
        if old == new:
            continue
        host = (new or old)["hostname"]
        tiers = {row["tier"] for row in (old, new) if row and row["tier"]}
        if old is None:
            changes.append((f"{host} joined", tiers))
        elif new is None:
            changes.append((f"{host} left", tiers))
        else:
            what = [f"{k} {old[k] or '-'} → {new[k] or '-'}" for k in ("role", "availability", "state", "labels")
                    if old[k] != new[k]]
            if what:
                changes.append((f"{host}: " + ", ".join(what), tiers))
    return changes


@dataclass(frozen=True)
class DropletSpec:
    """A droplet to create, as the topology describes it."""

    name: str
    tier: str
    size: str
    region: str
    image: str
    tags: tuple[str, ...]
    ssh_keys: tuple[str, ...] = ()
    user_data: str | None = None


def droplet_specs(topology: TopologyConfig, user_data: str | None = None) -> list[DropletSpec]:
    specs = []
    for tier, spec in topology.tiers.items():
        tags = (topology.project, f"{topology.project}-{tier}", *spec.tags)
        for name in topology.droplet_names(tier):
            specs.append(DropletSpec(name, tier, spec.size, spec.region or topology.region, spec.image or topology.image,
                                     tags, tuple(topology.ssh_keys), user_data))
    return specs


def tier_of_node(topology: TopologyConfig, node: Node) -> str | None:
    """A node's tier: from its host name (droplet names are <project>-<tier>-<nn>), else its tier label."""
    for tier in topology.tiers:
        if node.hostname in topology.droplet_names(tier):
            return tier
    return node.tier if node.tier in topology.tiers else None
