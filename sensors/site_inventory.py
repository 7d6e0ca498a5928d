"""Keeps the `sites` partitions equal to the farm inventory; new sites get their first backup at once.

A removed site's partition is deleted; its backups are kept. With swarm.discover_sites, services
labelled wpfarm.site are added to the inventory file first (validated like any configured site;
an invalid label is logged and skipped), so the file stays the one inventory everything reads.
"""


from datetime import datetime, timezone

import dagster as dg
from pydantic import ValidationError

from resources.object_store import ObjectStoreResource
from resources.swarm import SwarmError, SwarmResource
from wpfarm_assets.backups.health import record_sites
from wpfarm_assets.core.config import ConfigError, FarmConfig, Site, add_site_to_file
from wpfarm_assets.partitions import run_tags, sites


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
    description="Adds and removes `sites` partitions to match the sites of the farm configuration (the file "
                "$WPFARM_CONFIG names; default configs/farm.yaml), and Swarm service labels with "
                "swarm.discover_sites; backs up new sites. Sites are added there or with `wpfarm site create`, "
                "not in the UI: a partition added by hand is removed again.",
)
def site_inventory_sensor(context: dg.SensorEvaluationContext, farm: dg.ResourceParam[FarmConfig],
                          object_store: ObjectStoreResource, swarm: SwarmResource) -> dg.SensorResult:
    config = farm.reread()  # the inventory as the file says now: noticing its changes is this sensor's job
    if config.swarm.discover_sites and swarm.docker_host:
        config = discover(context, config, swarm)
    wanted = [site.name for site in config.sites]
    known = set(context.instance.get_dynamic_partitions(sites.name))
    added = [name for name in wanted if name not in known]
    removed = sorted(known - set(wanted))
    requests = []
    if added:
        # New partitions are appended in this order, so they form one range: one run backs them up.
        requests.append(dg.RunRequest(run_key=f"first-backup:{added[0]}..{added[-1]}:{len(known)}",
                                      tags=run_tags(added)))
    partition_requests = []
    if added:
        record_sites(object_store.store(), [config.site(name) for name in added], datetime.now(timezone.utc))
        partition_requests.append(sites.build_add_request(added))
    if removed:
        partition_requests.append(sites.build_delete_request(removed))
    if added or removed:
        context.log.info(f"sites added: {added or 'none'}; removed: {removed or 'none'}")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partition_requests)
