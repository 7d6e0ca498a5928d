"""The per-site backup assets. Thin: read config and resources, call wpfarm_assets.backup, report.

One run covers any number of sites (a partition range, BackfillPolicy.single_run) and backs them up
in parallel. One site's failure does not hide the others: each site that succeeded is recorded as
its own materialization, and the step then fails naming exactly the sites that did not.
"""


import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from resources.gpg import GPGResource
from resources.mariadb import MariaDBResource
from resources.object_store import ObjectStoreResource
from resources.ssh import NodeResource
from wpfarm_assets.backup import Backup, BackupError
from wpfarm_assets.backup import back_up_database as _back_up_database
from wpfarm_assets.backup import back_up_files as _back_up_files
from wpfarm_assets.config import Site, load_config

# Batching many sites into one run is the point of backfill_policy; its "beta" label is noise here.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

sites = dg.DynamicPartitionsDefinition(name="sites")


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the sites from `first` to `last` in partition order."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def backup_metadata(backup: Backup) -> dict:
    m = backup.manifest
    metadata = {
        "object_key": m["object_key"],
        "plaintext_bytes": m["plaintext_bytes"],
        "stored_bytes": m["stored_bytes"],
        "ratio": round(m["plaintext_bytes"] / m["stored_bytes"], 2) if m["stored_bytes"] else 0.0,
        "duration_seconds": m["duration_seconds"],
        "sha256": m["sha256"],
        "key_fingerprint": m["key_fingerprint"],
        "source": m["source"],
    }
    if "tables" in m:
        metadata["tables"] = len(m["tables"])
        metadata["rows"] = sum(m["tables"].values())
        metadata["rows_per_table"] = dg.MetadataValue.json(m["tables"])
    else:
        metadata["files"] = m["files"]
    return metadata


def back_up_sites(context: dg.AssetExecutionContext, work: Callable[[Site], Backup]) -> dg.MaterializeResult:
    config = load_config()
    parallelism = config.backup.parallelism
    names = context.partition_keys

    def one(name: str) -> Backup:
        try:
            return work(config.site(name))
        except BackupError:
            raise
        except Exception as exc:  # a missing key, an unknown site: still name the site
            raise BackupError(f"site {name}: {exc}") from exc

    failures: dict[str, str] = {}
    done: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=min(parallelism, len(names))) as pool:
        for name, future in [(n, pool.submit(one, n)) for n in names]:
            try:
                done[name] = backup_metadata(future.result())
                context.log.info(f"{name}: {done[name]['object_key']} ({done[name]['stored_bytes']} bytes)")
            except Exception as exc:  # noqa: BLE001 - collected and reported per site below
                failures[name] = str(exc)
                context.log.error(str(exc))

    if failures:
        for name, metadata in done.items():
            context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=name, metadata=metadata))
        raise dg.Failure(
            description=f"{len(failures)} of {len(names)} sites failed: " + "; ".join(failures.values()),
            metadata={"failed_sites": sorted(failures), "succeeded": len(done)},
            allow_retries=False,
        )
    for name, metadata in done.items():
        context.add_asset_metadata(metadata, partition_key=name)
    return dg.MaterializeResult(metadata={"sites": len(done)})


@dg.asset(
    partitions_def=sites,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="backups",
    kinds={"mariadb", "s3"},
    pool="database",
)
def database_dump(
    context: dg.AssetExecutionContext,
    mariadb: MariaDBResource,
    database_node: NodeResource,
    object_store: ObjectStoreResource,
    gpg: GPGResource,
) -> dg.MaterializeResult:
    """The site's database: mariadb-dump → zstd → gpg → object store, with a manifest."""
    db = mariadb.client(database_node.runner())
    store = object_store.store()
    return back_up_sites(
        context, lambda site: _back_up_database(site, db, store, gpg.encrypt_argv(), gpg.fingerprint())
    )


@dg.asset(
    partitions_def=sites,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="backups",
    kinds={"s3"},
    pool="storage",
)
def file_archive(
    context: dg.AssetExecutionContext,
    storage_node: NodeResource,
    object_store: ObjectStoreResource,
    gpg: GPGResource,
) -> dg.MaterializeResult:
    """The site's wp-content (and wp-config.php): tar → zstd → gpg → object store, with a manifest."""
    runner = storage_node.runner()
    store = object_store.store()
    return back_up_sites(
        context, lambda site: _back_up_files(site, runner, store, gpg.encrypt_argv(), gpg.fingerprint())
    )
