"""The local instance's pooled SQLite event log: same files as Dagster's own storage, bounded open shards."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from services import wait_for

from wpfarm_assets.dagster_storage import OPEN_SHARDS, PooledSqliteEventLogStorage

ROOT = Path(__file__).resolve().parents[2]

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


WRITER = """
import sys, dagster as dg
with dg.DagsterInstance.from_config(sys.argv[1]) as inst:
    run = inst.get_run_by_id(sys.argv[2])
    for i in range(5):
        inst.report_engine_event(f"site {i} done", run)
"""


def test_a_run_written_by_another_process_is_followed_live(tmp_path):
    """What the web UI's run page does: read the run's events, then watch for more, while the run
    writes from its own process."""
    from dagster._core.test_utils import create_run_for_test

    (tmp_path / "dagster.yaml").write_text(POOLED.format(home=tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        run = create_run_for_test(inst, job_name="back_up_sites")
        seen: list[str] = []
        inst.watch_event_logs(run.run_id, inst.get_records_for_run(run.run_id).cursor,
                              lambda event, _cursor: seen.append(event.dagster_event.message))
        subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), run.run_id], check=True, cwd=ROOT)
        wait_for(lambda: len(seen) == 5, timeout=10, what=f"5 events seen live (saw {seen})")
        assert seen == [f"site {i} done" for i in range(5)]
