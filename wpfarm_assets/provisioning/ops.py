"""The provision_farm steps as ops: droplets → Swarm init → join → labels → networks → stacks. Each
plans first (wpfarm_assets.provisioning.plans), shows its plan as a table in the UI, and applies it
unless dry_run."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg

from resources.digitalocean import DigitalOceanError, DigitalOceanResource
from resources.ssh import CommandError, SSHRunner, run
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.core.config import FarmConfig, SSHConfig
from wpfarm_assets.infrastructure.assets import table
from wpfarm_assets.provisioning.plans import (
    Change,
    farm_stack_changes,
    plan_droplets,
    plan_joins,
    plan_labels,
    plan_networks,
    plan_swarm_init,
)

T = TypeVar("T")


def fetched(call: Callable[[], T]) -> T:
    """`call()`, with DigitalOcean and Docker API errors turned into a step failure that says why."""
    try:
        return call()
    except (DigitalOceanError, SwarmError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


class StepConfig(dg.Config):
    dry_run: bool = False  # plan only: show the differences, change nothing


class DropletsConfig(StepConfig):
    destroy_extra: bool = False  # destroy tagged droplets the topology does not have


def carry_out(context: dg.OpExecutionContext, changes: list[Change], dry_run: bool,
              apply: Callable[[Change], None]) -> int:
    """Show the plan, then apply each change that is one (not "keep") unless dry_run; fail at the
    end, naming every change that failed."""
    context.add_output_metadata({
        "dry_run": dry_run,
        "changes": len([c for c in changes if c.action != "keep"]),
        "plan": table([c.row() for c in changes], ["target", "action", "detail"]),
    })
    failed = []
    for change in changes:  # each change is tried: one that fails does not hold back the others
        context.log.info(f"{'would ' if dry_run else ''}{change.action} {change.target}: {change.detail}")
        if not dry_run and change.action != "keep":
            try:
                apply(change)
            except (DigitalOceanError, SwarmError, CommandError) as exc:
                failed.append(f"{change.action} {change.target} failed: {exc}")
                context.log.error(failed[-1])
    if failed:
        raise dg.Failure(f"{len(failed)} of {len(changes)} changes failed: " + "; ".join(failed), allow_retries=False)
    return len(changes)


def _droplets(digitalocean: DigitalOceanResource):
    if not digitalocean.token:
        raise dg.Failure("no DigitalOcean token (DIGITALOCEAN_TOKEN)", allow_retries=False)
    return fetched(digitalocean.droplets)


@dg.op(description="Create the droplets the topology has and the account lacks (destroys only with destroy_extra).")
def provision_droplets(context: dg.OpExecutionContext, config: DropletsConfig, farm: dg.ResourceParam[FarmConfig],
                       digitalocean: DigitalOceanResource) -> int:
    user_data = None
    if farm.provisioning.user_data_file:
        user_data = farm.provisioning.project_path(farm.provisioning.user_data_file).read_text()
    changes = plan_droplets(farm.topology, _droplets(digitalocean), user_data, config.destroy_extra)

    def apply(change: Change) -> None:
        if change.action == "create":
            digitalocean.create_droplet(change.payload)
        else:
            digitalocean.destroy_droplet(change.payload)

    return carry_out(context, changes, config.dry_run, apply)


@dg.op(ins={"after": dg.In(dg.Nothing)}, description="Initialize the Swarm on the first manager if it is not.")
def init_swarm(context: dg.OpExecutionContext, config: StepConfig, farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource) -> int:
    try:
        changes = plan_swarm_init(swarm.swarm_state(), farm.swarm.advertise_addr)
    except (SwarmError, ValueError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return carry_out(context, changes, config.dry_run, lambda c: swarm.init(c.payload))


@dg.op(ins={"after": dg.In(dg.Nothing)},
       description="Join the topology's droplets that are not Swarm nodes yet, as manager or worker (over SSH).")
def join_nodes(context: dg.OpExecutionContext, config: StepConfig, farm: dg.ResourceParam[FarmConfig], digitalocean: DigitalOceanResource,
               swarm: SwarmResource) -> int:
    changes = plan_joins(farm.topology, _droplets(digitalocean), fetched(swarm.nodes))
    p = farm.provisioning

    def apply(change: Change) -> None:
        droplet, role = change.payload
        token = swarm.join_tokens()[role]
        runner = SSHRunner(SSHConfig(host=droplet.ip, user=p.ssh_user, key_file=p.ssh_key_file, known_hosts=p.known_hosts))
        try:
            run(runner, ["docker", "swarm", "join", "--token", token, f"{farm.swarm.advertise_addr}:2377"])
        finally:
            runner.close()

    return carry_out(context, changes, config.dry_run, apply)


@dg.op(ins={"after": dg.In(dg.Nothing)}, description="Put tier=<tier> and the tier's labels on every node.")
def label_nodes(context: dg.OpExecutionContext, config: StepConfig, farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource) -> int:
    changes = plan_labels(farm.topology, fetched(swarm.nodes))
    return carry_out(context, changes, config.dry_run, lambda c: swarm.set_labels(*c.payload))


@dg.op(ins={"after": dg.In(dg.Nothing)}, description="Create the farm's encrypted, attachable overlay networks.")
def create_networks(context: dg.OpExecutionContext, config: StepConfig, farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource) -> int:
    try:
        changes = plan_networks(farm.provisioning.networks, swarm.networks())
    except SwarmError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return carry_out(context, changes, config.dry_run, lambda c: swarm.create_overlay_network(c.target))


@dg.op(ins={"after": dg.In(dg.Nothing)}, pool="swarm",
       description="Deploy the farm's stacks (configs/stacks) that are new or changed; Varnish routes to the deployed sites.")
def deploy_stacks(context: dg.OpExecutionContext, config: StepConfig, farm: dg.ResourceParam[FarmConfig], swarm: SwarmResource) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            changes = farm_stack_changes(farm.provisioning, swarm, Path(scratch), log=context.log)
        except SwarmError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        return carry_out(context, changes, config.dry_run, lambda c: swarm.deploy_stack(c.target, c.payload))
