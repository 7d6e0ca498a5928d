"""The `sites` partitions (one per site of the farm configuration; only sensors and the CLI add or
delete them), the run tags that make one run cover a range of them, and `for_each_site`: how one
step works on many sites at once without one site's failure hiding the others.
"""

import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import dagster as dg
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_EVENT_POINTER,
    extract_data_version_from_entry,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)

from wpfarm_assets.core.config import FarmConfig, Site

# Its partitions come from the inventory only (farm.yaml, or `wpfarm site create`): the
# site_inventory_sensor removes one added by hand in the UI.
sites = dg.DynamicPartitionsDefinition(name="sites")

# Batching many sites into one run is the point of the site assets' backfill_policy; its "beta" label is noise.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# Which sites a run covers, readable in the UI's runs list: `site001 … site100 (100)`.
SITES_TAG = "wpfarm/sites"


def partition_range_tags(first: str, last: str, count: int | None = None) -> dict[str, str]:
    """Run tags that make one run cover the sites from `first` to `last` in partition order (`count`
    of them, when known), and say so in SITES_TAG."""
    covered = first if first == last else f"{first} … {last}" + (f" ({count})" if count else "")
    return {RANGE_START: first, RANGE_END: last, SITES_TAG: covered}


def mark_retired(instance: dg.DagsterInstance, names: list[str], days: int) -> None:
    """Mark the partitions of sites that left the farm configuration as retired (an observation on
    each backup asset's partition, shown on its events), so the UI says why they get no backups."""
    from wpfarm_assets.backups.assets import database_dump, file_archive

    known = set(instance.get_dynamic_partitions(sites.name))
    for name in (n for n in names if n in known):
        for asset in (database_dump, file_archive):
            instance.report_runless_asset_event(dg.AssetObservation(
                asset_key=asset.key, partition=name, metadata={"retired": True, "kept_days": days},
                description=f"RETIRED: removed from the farm configuration; its backups are kept {days} days, "
                            "then deleted (wpfarm status lists it)"))


def run_tags(run: list[str]) -> dict[str, str]:
    """partition_range_tags for one run of consecutive partitions (core.batches.site_runs)."""
    return partition_range_tags(run[0], run[-1], len(run))


def provenance(context: dg.AssetExecutionContext) -> dict[str, dict[str, str]]:
    """Per site of the run, the tags Dagster puts on a materialization made from a step's output
    (its data provenance: which version of each parent it was made from; execute_step's
    _build_data_version_tags). The sites' materializations are events, not outputs, so they get
    them here: without them Dagster judges staleness by timestamps, and every backup would turn
    "unsynced" each time the infrastructure is checked, changed or not. Read once, as the step
    starts: what the sites' work is made from, not what landed while it ran."""
    graph, names = context.job_def.asset_layer, context.partition_keys
    node = graph.get(context.asset_key)
    code_version = node.code_version or context.run.run_id
    tags = {n: {CODE_VERSION_TAG: code_version, DATA_VERSION_TAG: f"{context.run.run_id}:{n}"} for n in names}
    storage, materialized = context.instance.event_log_storage, dg.DagsterEventType.ASSET_MATERIALIZATION
    for parent in node.parent_keys:
        if graph.get(parent).partitions_def:  # the sites partitions again: site to site
            ids = storage.get_latest_storage_id_by_partition(parent, materialized, set(names))
            versions = storage.get_latest_tags_by_partition(parent, materialized, [DATA_VERSION_TAG], names)
            found = {n: (versions.get(n, {}).get(DATA_VERSION_TAG), ids.get(n)) for n in names}
        else:
            record = context.instance.get_latest_data_version_record(parent, is_source=False)
            version = extract_data_version_from_entry(record.event_log_entry) if record else None
            found = dict.fromkeys(names, (version.value if version else None, record.storage_id if record else None))
        for name, (version, storage_id) in found.items():
            tags[name][get_input_data_version_tag(parent)] = version or DEFAULT_DATA_VERSION.value
            tags[name][get_input_event_pointer_tag(parent)] = str(storage_id) if storage_id else NULL_EVENT_POINTER
    return tags


def for_each_site(context: dg.AssetExecutionContext, farm: FarmConfig, parallelism: int,
                  work: Callable[[Site], dict]) -> Iterator[dg.AssetMaterialization]:
    """Run `work` (returning a site's metadata) for every site of the run, in parallel, isolated.

    Each site is recorded as its own materialization the moment it succeeds, while the others are
    still running (the UI shows a run's progress site by site). A site that fails gets an
    observation on its own partition with its reason (`failed`), so the UI shows why on the
    partition, without the run's log. If any failed, the step then fails naming exactly those sites
    and their causes, so only they show as failed. Assets yield from it with output_required=False:
    the materializations are these events, not a step output.
    """
    names = context.partition_keys
    configured = {s.name for s in farm.sites}
    if retired := [n for n in names if n not in configured]:  # their partitions stay (backups/retired.py)
        context.log.info(f"passed over {len(retired)} retired site(s), not in the farm configuration: "
                         + ", ".join(retired[:10]))
        names = [n for n in names if n in configured]
        if not names:
            return
    if SITES_TAG not in context.run.tags:  # a launch or backfill from the UI: say which sites it covers too
        context.instance.add_run_tags(context.run.run_id, {
            SITES_TAG: partition_range_tags(names[0], names[-1], len(names))[SITES_TAG]})
    tags = provenance(context)
    failures: dict[str, str] = {}
    succeeded = 0
    with ThreadPoolExecutor(max_workers=min(parallelism, len(names))) as pool:
        futures = {pool.submit(lambda n: work(farm.site(n)), name): name for name in names}
        try:
            for future in as_completed(futures):
                name = futures[future]
                try:
                    metadata = future.result()
                except Exception as exc:  # noqa: BLE001 - collected and reported per site below
                    message = str(exc)
                    failures[name] = message if message.startswith(f"site {name}") else f"site {name}: {message}"
                    context.log.error(failures[name])
                    yield dg.AssetObservation(asset_key=context.asset_key, partition=name,
                                              description=f"FAILED: {failures[name]}",
                                              metadata={"failed": failures[name], "run_id": context.run.run_id})
                    continue
                succeeded += 1
                yield dg.AssetMaterialization(asset_key=context.asset_key, partition=name, metadata=metadata,
                                              tags=tags[name])
        except BaseException:  # the run is stopping (terminated, or recording an event failed)
            pool.shutdown(cancel_futures=True)  # start no more sites; those running finish
            raise
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(names)} sites failed: "
                        + "; ".join(failures[n] for n in sorted(failures)),
            metadata={"failed_sites": sorted(failures), "succeeded": succeeded},
            allow_retries=False,
        )
