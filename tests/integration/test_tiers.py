"""The database tier asset against the machine's real MariaDB, running and unreachable."""

import socket

import dagster as dg
import yaml

from wpfarm_assets.assets import database_tier
from wpfarm_assets.config import load_config
from wpfarm_assets.definitions import build_resources


def materialize_tier(instance):
    return dg.materialize([database_tier], resources=build_resources(load_config()), instance=instance,
                          raise_on_error=False)


def test_database_tier_reports_the_real_server(make_farm, dagster_home, db):
    make_farm(1)
    result = materialize_tier(dg.DagsterInstance.get())
    assert result.success
    metadata = result.asset_materializations_for_node("database_tier")[0].metadata
    assert metadata["mode"].value == "standalone" and metadata["version"].value == db.version()
    assert int(metadata["uptime"].value) > 0 and metadata["healthy"].value is True


def test_a_stopped_server_is_a_clear_failure(make_farm, dagster_home):
    farm = make_farm(1)
    with socket.socket() as s:  # a port with no server behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load(farm.config_path.read_text())
    config["database"]["port"] = port
    farm.config_path.write_text(yaml.safe_dump(config))
    result = materialize_tier(dg.DagsterInstance.get())
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert f"database tier unreachable at 127.0.0.1:{port}" in message and "Can't connect" in message
