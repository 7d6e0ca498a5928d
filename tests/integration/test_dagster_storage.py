"""The local instance's pooled SQLite event log: same files as Dagster's own storage, bounded open shards."""

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from wpfarm_assets.dagster_storage import OPEN_SHARDS, PooledSqliteEventLogStorage

POOLED = """
storage:
  custom:
    module: wpfarm_assets.dagster_storage
    class: PooledSqliteStorage
    config:
      base_dir: {home}
"""
SITES = dg.StaticPartitionsDefinition([f"site{i:02}.example.com" for i in range(OPEN_SHARDS + 4)])


@dg.asset(partitions_def=SITES)
def site_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"site": context.partition_key})


def test_pooled_storage_writes_what_dagsters_own_sqlite_storage_reads(tmp_path):
    keys = SITES.get_partition_keys()
    done = keys[: OPEN_SHARDS + 2]  # more runs (shards) than engines kept open
    (tmp_path / "dagster.yaml").write_text(POOLED.format(home=tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        storage = inst.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        for key in done:
            assert dg.materialize([site_asset], partition_key=key, instance=inst).success
        assert len(storage._engines) <= OPEN_SHARDS
        status = inst.get_status_by_partition(site_asset.key, keys, SITES)
        assert [k for k, s in status.items() if s == dg.AssetPartitionStatus.MATERIALIZED] == done

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # Dagster's default storage
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        assert type(inst.event_log_storage) is SqliteEventLogStorage
        assert len(inst.get_runs()) == len(done)
        status = inst.get_status_by_partition(site_asset.key, keys, SITES)
        assert [k for k, s in status.items() if s == dg.AssetPartitionStatus.MATERIALIZED] == done
        latest = inst.get_latest_materialization_event(site_asset.key)
        assert latest.asset_materialization.metadata["site"].value == done[-1]
