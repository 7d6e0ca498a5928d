"""Provisioning jobs: provision_farm (the farm from its topology, step by step) and provision_sites."""

import dagster as dg

from wpfarm_assets.provisioning.assets import site_provisioning
from wpfarm_assets.provisioning.ops import (
    create_networks,
    deploy_stacks,
    init_swarm,
    join_nodes,
    label_nodes,
    provision_droplets,
)


@dg.job(description="Build the farm from the topology, step by step; each step plans first (dry_run: plan only). "
                    "Select single steps in the launchpad to run them alone.")
def provision_farm():
    swarm_ready = init_swarm(after=provision_droplets())
    deploy_stacks(after=create_networks(after=label_nodes(after=join_nodes(after=swarm_ready))))


provision_sites_job = dg.define_asset_job(
    "provision_sites", selection=[site_provisioning],
    description="Provision (or re-provision) the selected sites: database, user, content folder, stack.")
