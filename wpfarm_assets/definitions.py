"""The one Definitions object of the wpfarm code location, built lazily from the farm configuration.

Importing this module reads no file and starts nothing: Dagster calls `defs()` when it loads the
code location, which reads farm.yaml ($WPFARM_CONFIG) once; a missing or invalid file fails the
load with a message naming the file and the entry. The configuration then reaches every asset,
op, check and sensor as the `farm` resource (the FarmConfig itself); nothing else reads the file.
"""

from __future__ import annotations

import os

import dagster as dg

from resources.alerts import AlertmanagerResource, PushgatewayResource
from resources.digitalocean import DigitalOceanResource
from resources.gpg import GPGResource
from resources.mariadb import MariaDBResource
from resources.object_store import ObjectStoreResource
from resources.redis import RedisResource
from resources.ssh import NodeResource
from resources.swarm import SwarmResource
from schedules.backup_health import (
    backup_health_schedule,
    build_binlog_schedule,
    infrastructure_schedule,
    verify_backups_schedule,
)
from schedules.daily_backup import build_daily_backup_schedule
from schedules.restore_drill import build_restore_drill_schedule
from sensors.checks_after_runs import checks_after_failed_run, checks_after_run
from sensors.retention_after_backup import (
    offsite_after_failed_retention,
    offsite_after_retention,
    retention_after_backup,
    retention_after_failed_backup,
)
from sensors.run_failures import run_failure_alert
from sensors.site_inventory import site_inventory_sensor
from sensors.swarm_nodes import swarm_node_sensor
from wpfarm_assets.backups.assets import (
    backup_inventory,
    binlog_archive,
    database_dump,
    file_archive,
    offsite_copy,
    restore_drill,
    retention,
    retired_sites,
)
from wpfarm_assets.backups.checks import (
    backup_age_check,
    backup_integrity_check,
    binlog_archive_check,
    database_dump_age_check,
    farm_key_check,
    file_archive_age_check,
    offsite_copy_check,
    restore_drill_check,
)
from wpfarm_assets.backups.jobs import (
    apply_retention_job,
    archive_binlogs_job,
    back_up_sites_job,
    check_backup_health_job,
    clone_site_job,
    copy_offsite_job,
    drill_sites_job,
    restore_site,
    verify_backups_job,
)
from wpfarm_assets.core.config import FarmConfig, load_config
from wpfarm_assets.infrastructure.assets import (
    check_infrastructure_job,
    infrastructure_assets,
    not_configured,
    wired_past,
)
from wpfarm_assets.provisioning.assets import site_provisioning
from wpfarm_assets.provisioning.jobs import provision_farm, provision_sites_job


def secret(name: str) -> dg.EnvVar | None:
    """A credential from the environment (see .env.example), or None where the farm needs none."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources(config: FarmConfig) -> dict:
    return {
        "farm": config,
        "mariadb": MariaDBResource(
            host=config.database.host,
            port=config.database.port,
            user=config.database.user,
            password=secret("WPFARM_DB_PASSWORD"),
            stall_timeout=config.backup.stall_timeout,
        ),
        "database_node": NodeResource.from_config(config.database.ssh),
        "storage_node": NodeResource.from_config(config.storage.ssh),
        "object_store": ObjectStoreResource(
            target=config.backup.target,
            endpoint_url=config.backup.s3_endpoint_url,
            region=config.backup.s3_region,
            access_key_id=secret("SPACES_ACCESS_KEY_ID"),
            secret_access_key=secret("SPACES_SECRET_ACCESS_KEY"),
            timeout=min(60.0, config.backup.stall_timeout),
            restic_password=secret("WPFARM_RESTIC_PASSWORD"),
            stall_timeout=config.backup.stall_timeout,
        ),
        **({"offsite": ObjectStoreResource(
            target=config.backup.offsite.target,
            endpoint_url=config.backup.offsite.s3_endpoint_url,
            region=config.backup.offsite.s3_region,
            access_key_id=secret("OFFSITE_ACCESS_KEY_ID"),
            secret_access_key=secret("OFFSITE_SECRET_ACCESS_KEY"),
            timeout=min(60.0, config.backup.stall_timeout),
            restic_password=secret("WPFARM_RESTIC_PASSWORD"),  # the copy's repositories are the primary's, copied
            stall_timeout=config.backup.stall_timeout,
            lock_days=config.backup.offsite.lock_days,
            keys_from="OFFSITE",
        )} if config.backup.offsite else {}),
        "gpg": GPGResource(recipient=config.backup.gpg_recipient, home=config.backup.gpg_home),
        "alertmanager": AlertmanagerResource(url=config.alerts.alertmanager_url),
        "pushgateway": PushgatewayResource(url=config.alerts.pushgateway_url),
        "digitalocean": DigitalOceanResource(token=secret("DIGITALOCEAN_TOKEN"), tag=config.topology.project),
        "swarm": SwarmResource(docker_host=config.swarm.docker_host),
        "redis": RedisResource(password=secret("REDIS_PASSWORD")),
    }


def initialized(config: FarmConfig, name: str):
    """One of the farm's resources outside a run (the CLI, or an op that needs an optional one):
    its dg.EnvVar credentials resolved here."""
    return build_resources(config)[name].process_config_and_initialize()


def target_kinds(asset: dg.AssetsDefinition, config: FarmConfig) -> dg.AssetsDefinition:
    """The asset's kinds as the configured target is: "s3" for S3 (Spaces), "filesystem" for a local folder."""
    store = "s3" if config.backup.target.startswith("s3://") else "filesystem"
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(
        kinds={k for k in spec.kinds if k not in ("s3", "filesystem")} | {store}))


def build_definitions(config: FarmConfig) -> dg.Definitions:
    absent = not_configured(config)  # infrastructure this farm gives no way to check: not in the graph
    pitr = config.database.pitr_enabled  # the binary-log archive, when the farm has point-in-time recovery
    offsite = config.backup.offsite is not None  # the off-site copy, when the farm has one
    return dg.Definitions(
        assets=wired_past([*infrastructure_assets, site_provisioning,
                           *(target_kinds(a, config) for a in (database_dump, file_archive, retention, retired_sites)),
                           restore_drill, backup_inventory, *([target_kinds(binlog_archive, config)] if pitr else []),
                           *([offsite_copy] if offsite else [])],
                          set(absent)),
        asset_checks=[backup_age_check, backup_integrity_check, restore_drill_check, database_dump_age_check,
                      file_archive_age_check, farm_key_check, *([binlog_archive_check] if pitr else []),
                      *([offsite_copy_check] if offsite else [])],
        jobs=[back_up_sites_job, apply_retention_job, check_backup_health_job, verify_backups_job, drill_sites_job,
              *([archive_binlogs_job] if pitr else []), *([copy_offsite_job] if offsite else []),
              check_infrastructure_job(absent), restore_site, clone_site_job, provision_farm, provision_sites_job],
        schedules=[build_daily_backup_schedule(config.backup.schedule, config.backup.sites_per_run),
                   build_restore_drill_schedule(config.drill.schedule), backup_health_schedule,
                   verify_backups_schedule, infrastructure_schedule,
                   *([build_binlog_schedule(config.database.binlog_every_minutes)] if pitr else [])],
        sensors=[site_inventory_sensor, *([swarm_node_sensor] if "swarm_nodes" not in absent else []),
                 retention_after_backup, retention_after_failed_backup, checks_after_run, checks_after_failed_run,
                 *([offsite_after_retention, offsite_after_failed_retention] if offsite else []),
                 run_failure_alert],
        resources=build_resources(config),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
