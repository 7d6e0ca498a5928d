"""dagster.production.yaml against the machine's PostgreSQL: the instance loads with its queue and
Docker run launcher, and a backup run records its per-site materializations there."""

import shutil
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest

from wpfarm_assets.core.config import load_config
from wpfarm_assets.definitions import build_definitions
from wpfarm_assets.partitions import partition_range_tags

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres_database():
    name = f"wpfarm_test_{uuid.uuid4().hex[:8]}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c"]
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    yield name
    subprocess.run([*psql, f"DROP DATABASE {name} WITH (FORCE)"], check=True, capture_output=True)


def psql(database: str, query: str) -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", query],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_a_backup_run_on_the_production_instance_records_its_sites_in_postgres(
        make_farm, tmp_path, monkeypatch, postgres_database):
    farm = make_farm(2)
    home = tmp_path / "production_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.production.yaml", home / "dagster.yaml")
    for key, value in {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_USER": "postgres",
                       "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": postgres_database}.items():
        monkeypatch.setenv(key, value)
    instance = dg.DagsterInstance.get()
    assert instance.get_ref().storage_data.class_name == "PooledPostgresStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert type(instance.run_launcher).__name__ == "DockerRunLauncher"

    names = [s["name"] for s in farm.sites]
    instance.add_dynamic_partitions("sites", names)
    sessions = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    before = int(psql(postgres_database, sessions))
    result = build_definitions(load_config()).resolve_job_def("back_up_sites").execute_in_process(
        instance=instance, tags=partition_range_tags(names[0], names[-1]))
    assert result.success
    # Connections are kept open: a handful of sessions for the run, not one per statement (~200).
    assert int(psql(postgres_database, sessions)) - before < 15
    count = psql(postgres_database, "SELECT COUNT(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
    assert count == "4"  # 2 sites x (database_dump, file_archive), in PostgreSQL
    for asset in ("database_dump", "file_archive"):
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(names)
