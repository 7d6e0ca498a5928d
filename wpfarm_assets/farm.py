"""Provisioning as Dagster: the provision_farm job (droplets → Swarm init → join → labels → networks
→ stacks, each step planned first, its plan a table in the UI, applied unless dry_run) and the
site_provisioning asset on the `sites` partitions (a backfill re-provisions any set of sites).
The plans and the work are wpfarm_assets.provisioning's; this module only wires them."""

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from resources.digitalocean import DigitalOceanError, DigitalOceanResource
from resources.mariadb import MariaDBResource
from resources.ssh import CommandError, NodeResource, SSHRunner, run
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.assets import for_each_site, sites
from wpfarm_assets.config import SSHConfig, Site, load_config
from wpfarm_assets.infrastructure import fetched, table
from wpfarm_assets.provisioning import (
    Change,
    farm_stack_changes,
    plan_droplets,
    plan_joins,
    plan_labels,
    plan_networks,
    plan_swarm_init,
    route_sites,
    site_provision,
)


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
def provision_droplets(context: dg.OpExecutionContext, config: DropletsConfig,
                       digitalocean: DigitalOceanResource) -> int:
    farm = load_config()
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
def init_swarm(context: dg.OpExecutionContext, config: StepConfig, swarm: SwarmResource) -> int:
    try:
        changes = plan_swarm_init(swarm.swarm_state(), load_config().swarm.advertise_addr)
    except (SwarmError, ValueError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return carry_out(context, changes, config.dry_run, lambda c: swarm.init(c.payload))


@dg.op(ins={"after": dg.In(dg.Nothing)},
       description="Join the topology's droplets that are not Swarm nodes yet, as manager or worker (over SSH).")
def join_nodes(context: dg.OpExecutionContext, config: StepConfig, digitalocean: DigitalOceanResource,
               swarm: SwarmResource) -> int:
    farm = load_config()
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
def label_nodes(context: dg.OpExecutionContext, config: StepConfig, swarm: SwarmResource) -> int:
    changes = plan_labels(load_config().topology, fetched(swarm.nodes))
    return carry_out(context, changes, config.dry_run, lambda c: swarm.set_labels(*c.payload))


@dg.op(ins={"after": dg.In(dg.Nothing)}, description="Create the farm's encrypted, attachable overlay networks.")
def create_networks(context: dg.OpExecutionContext, config: StepConfig, swarm: SwarmResource) -> int:
    try:
        changes = plan_networks(load_config().provisioning.networks, swarm.networks())
    except SwarmError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return carry_out(context, changes, config.dry_run, lambda c: swarm.create_overlay_network(c.target))


@dg.op(ins={"after": dg.In(dg.Nothing)}, pool="swarm",
       description="Deploy the farm's stacks (configs/stacks) that are new or changed; Varnish routes to the deployed sites.")
def deploy_stacks(context: dg.OpExecutionContext, config: StepConfig, swarm: SwarmResource) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            changes = farm_stack_changes(load_config().provisioning, swarm, Path(scratch), log=context.log)
        except SwarmError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        return carry_out(context, changes, config.dry_run, lambda c: swarm.deploy_stack(c.target, c.payload))


@dg.job(description="Build the farm from the topology, step by step; each step plans first (dry_run: plan only). "
                    "Select single steps in the launchpad to run them alone.")
def provision_farm():
    swarm_ready = init_swarm(after=provision_droplets())
    deploy_stacks(after=create_networks(after=label_nodes(after=join_nodes(after=swarm_ready))))


@dg.asset(partitions_def=sites, backfill_policy=dg.BackfillPolicy.single_run(), output_required=False,
          group_name="provisioning", kinds={"mariadb", "docker"}, pool="swarm")  # with deploy_stacks: one writer of Varnish's routing
def site_provisioning(context: dg.AssetExecutionContext, mariadb: MariaDBResource, database_node: NodeResource,
                      storage_node: NodeResource, swarm: SwarmResource) -> Iterator[dg.AssetMaterialization]:
    """The site's database and least-privilege user (password generated, kept as a Swarm secret,
    never shown), its content folder and its stack; then Varnish's routing to the deployed sites.
    Safe to materialize again."""
    farm = load_config()
    db = mariadb.client(database_node.runner())
    runner = storage_node.runner()

    def one(site: Site) -> dict:
        return site_provision(site, db, runner, farm.provisioning, swarm)

    try:
        yield from for_each_site(context, farm.database.parallelism, one)
    finally:
        if swarm.docker_host:  # once per run, after every site: Varnish routes to the deployed sites
            try:
                context.log.info(f"Varnish routing: {route_sites(farm.provisioning, swarm, context.log)}")
            except SwarmError as exc:
                context.log.warning(f"Varnish routing not updated (deploy_stacks will): {exc}")


provision_sites_job = dg.define_asset_job(
    "provision_sites", selection=[site_provisioning],
    description="Provision (or re-provision) the selected sites: database, user, content folder, stack.")
