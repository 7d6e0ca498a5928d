"""site_provisioning: a site's database, least-privilege user, content folder and stack, on the
`sites` partitions (a backfill re-provisions any set of sites). The work is provisioning.plans'."""

from collections.abc import Iterator

import dagster as dg

from resources.mariadb import MariaDBResource
from resources.ssh import NodeResource
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.core.config import FarmConfig, Site
from wpfarm_assets.partitions import for_each_site, sites
from wpfarm_assets.provisioning.plans import route_sites, site_provision


@dg.asset(partitions_def=sites, backfill_policy=dg.BackfillPolicy.single_run(), output_required=False,
          group_name="provisioning", kinds={"mariadb", "docker"}, pool="swarm")  # with deploy_stacks: one writer of Varnish's routing
def site_provisioning(context: dg.AssetExecutionContext, farm: dg.ResourceParam[FarmConfig], mariadb: MariaDBResource, database_node: NodeResource,
                      storage_node: NodeResource, swarm: SwarmResource) -> Iterator[dg.AssetMaterialization]:
    """The site's database and least-privilege user (password generated, kept as a Swarm secret,
    never shown), its content folder and its stack; then Varnish's routing to the deployed sites.
    Safe to materialize again."""
    db = mariadb.client(database_node.runner())
    runner = storage_node.runner()

    def one(site: Site) -> dict:
        return site_provision(site, db, runner, farm.provisioning, swarm)

    try:
        yield from for_each_site(context, farm, farm.database.parallelism, one)
    finally:
        if swarm.docker_host:  # once per run, after every site: Varnish routes to the deployed sites
            try:
                context.log.info(f"Varnish routing: {route_sites(farm.provisioning, swarm, context.log)}")
            except SwarmError as exc:
                context.log.warning(f"Varnish routing not updated (deploy_stacks will): {exc}")
