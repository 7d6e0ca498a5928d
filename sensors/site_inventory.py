"""Keeps the `sites` partitions equal to the farm inventory; new sites get their first backup at once.

A removed site is retired (wpfarm_assets.backups.retired): its partition stays, marked, and its
backups are kept for retention.retired_days. With swarm.discover_sites, services
labelled wpfarm.site are added to the inventory file first (validated like any configured site;
an invalid label is logged and skipped), so the file stays the one inventory everything reads.
"""


import json
from datetime import datetime, timezone

import dagster as dg
from pydantic import ValidationError

from resources.object_store import ObjectStoreResource
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.backups.health import record_sites
from wpfarm_assets.backups.retired import retire
from wpfarm_assets.core.batches import site_runs
from wpfarm_assets.core.config import ConfigError, FarmConfig, Site, add_site_to_file
from wpfarm_assets.core.keys import site_root
from wpfarm_assets.partitions import mark_retired, run_tags, sites


def discover(context: dg.SensorEvaluationContext, config: FarmConfig, swarm: SwarmResource) -> FarmConfig:
    known = {site.name for site in config.sites}
    try:
        announced = swarm.site_labels()
    except SwarmError as exc:  # the configured sites are still kept in sync below
        context.log.warning(f"site discovery skipped: {exc}")
        return config
    for labels in announced:
        if labels["name"] in known:
            continue
        service = labels.pop("service")
        try:
            site = Site(**labels)
        except ValidationError as exc:
            context.log.warning(f"service {service}: labels do not make a valid site, skipped: {exc}")
            continue
        try:
            add_site_to_file(config.source, site)
        except (ConfigError, OSError) as exc:
            context.log.warning(f"service {service}: site {site.name} not added to the inventory: {exc}")
            continue
        known.add(labels["name"])
        context.log.info(f"service {service}: site {labels['name']} discovered and added to {config.source}")
    return config.reread()


@dg.sensor(
    job_name="back_up_sites",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds `sites` partitions for the sites of the farm configuration (the file $WPFARM_CONFIG "
                "names; default configs/farm.yaml), and Swarm service labels with swarm.discover_sites; backs up "
                "new sites. A site removed from it is retired (its partition stays, marked; its backups are kept "
                "for retention.retired_days). Sites are added there or with `wpfarm site create`, not in the UI: "
                "a partition added by hand is removed again.",
)
def site_inventory_sensor(context: dg.SensorEvaluationContext, farm: dg.ResourceParam[FarmConfig],
                          object_store: ObjectStoreResource, swarm: SwarmResource) -> dg.SensorResult:
    config = farm.reread()  # the inventory as the file says now: noticing its changes is this sensor's job
    if config.swarm.discover_sites and swarm.docker_host:
        config = discover(context, config, swarm)
    wanted = [site.name for site in config.sites]
    order = context.instance.get_dynamic_partitions(sites.name)
    known = set(order)
    retired = set(json.loads(context.cursor)["retired"]) if context.cursor else set()
    added = [name for name in wanted if name not in known]
    returned = sorted(retired & set(wanted))  # a retired site listed again: its history goes on
    removed = sorted(known - set(wanted) - retired)
    store, now = object_store.store(), datetime.now(timezone.utc)
    requests, partition_requests = [], []
    if added or returned:
        record_sites(store, [config.site(name) for name in added + returned], now)
    if added:
        # New partitions are appended in this order, so they form one range: one run backs them up.
        requests.append(dg.RunRequest(run_key=f"first-backup:{added[0]}..{added[-1]}:{len(known)}",
                                      tags=run_tags(added)))
        partition_requests.append(sites.build_add_request(added))
    requests += [dg.RunRequest(run_key=f"returned:{run[0]}..{run[-1]}:{now.isoformat()}", tags=run_tags(run))
                 for run in site_runs(returned, order, config.backup.sites_per_run)]
    # A site that has anything in the store and left is retired: its partition stays, marked. One
    # with nothing there was added by hand in the UI, or its backups are gone: deleted.
    leaving = [name for name in removed if next(iter(store.list(site_root(name))), None) is not None]
    if leaving:
        retire(store, leaving, now)
        mark_retired(context.instance, leaving, config.retention.retired_days)
    if deleted := sorted(set(removed) - set(leaving)):
        partition_requests.append(sites.build_delete_request(deleted))
    if added or returned or leaving or deleted:
        context.log.info(f"sites added: {added or 'none'}; back: {returned or 'none'}; retired: {leaving or 'none'}; "
                         f"partitions deleted: {deleted or 'none'}")
    retired = (retired - set(returned) | set(leaving)) & known  # a partition deleted with its backups: forgotten
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partition_requests,
                           cursor=json.dumps({"retired": sorted(retired)}))
