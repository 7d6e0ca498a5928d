"""Watches the Swarm's nodes: joining, leaving, going down, drained, relabelled.

On a change it asks for a run of swarm_nodes and of the affected tiers' health assets; on every tick
it keeps one alert per node (and per tier short of nodes) that differs from the topology firing, and
resolves the rest. A manager or database node down or drained, or such a tier short, is critical;
so is a manager whose Docker API does not answer.
"""

import json

import dagster as dg

from resources.alerts import AlertError, AlertmanagerResource
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.core.config import FarmConfig
from wpfarm_assets.core.topology import compare_nodes, node_changes
from wpfarm_assets.infrastructure.assets import TIER_ASSETS, not_configured, swarm_nodes

NODE_ALERT, TIER_ALERT, UNREACHABLE_ALERT = "WpfarmSwarmNode", "WpfarmSwarmTier", "WpfarmSwarmUnreachable"


@dg.sensor(
    job_name="check_infrastructure",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-checks swarm_nodes and the affected tiers when Swarm nodes change; alerts on nodes off the topology.",
)
def swarm_node_sensor(context: dg.SensorEvaluationContext, farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource,
                      alertmanager: AlertmanagerResource) -> dg.SensorResult | dg.SkipReason:
    if not swarm.docker_host:
        return dg.SkipReason("no Swarm configured (swarm.docker_host)")
    config = farm

    def sync(alertname: str, alerts: list) -> None:  # an Alertmanager outage must not stop the runs
        try:
            alertmanager.sync(alertname, alerts)
        except AlertError as exc:
            context.log.warning(f"{alertname} alerts not updated: {exc}")

    try:
        nodes = swarm.nodes()
    except SwarmError as exc:  # the manager itself: critical, until it answers again
        sync(UNREACHABLE_ALERT, [({"severity": "critical"}, {"summary": str(exc)})])
        return dg.SkipReason(f"Swarm unreachable: {exc}")
    sync(UNREACHABLE_ALERT, [])
    state = json.loads(context.cursor) if context.cursor else {"changes": 0, "nodes": {}}
    seen = {n.id: n.row() for n in nodes}

    differences = compare_nodes(config.topology, nodes)
    link = f"{config.alerts.dagster_url.rstrip('/')}/assets/swarm_nodes"
    for alertname, per_node in ((NODE_ALERT, True), (TIER_ALERT, False)):
        sync(alertname, [
            ({"tier": d.tier, "severity": d.severity, **({"node": d.name} if per_node else {})},
             {"summary": f"{d.name or 'tier ' + d.tier}: {d.problem}", "dashboard": link})
            for d in differences if bool(d.name) == per_node])

    changes = node_changes(state["nodes"], seen)
    requests = []
    if changes:
        state["changes"] += 1
        absent = not_configured(config)
        checked = [TIER_ASSETS[t].key for t in sorted({t for _, ts in changes for t in ts})
                   if t in TIER_ASSETS and f"{t}_tier" not in absent]
        summary = "; ".join(text for text, _ in changes)
        context.log.info(f"Swarm changed: {summary}")
        requests.append(dg.RunRequest(
            run_key=f"swarm-change-{state['changes']}",
            asset_selection=[swarm_nodes.key, *checked],
            tags={"wpfarm/swarm_change": summary[:200]},
        ))
    state["nodes"] = seen
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True))
