"""The wpfarm CLI: hostile input is refused before anything runs; the demo proves a full round trip."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wpfarm_assets.cli import main

WPFARM = str(Path(sys.executable).parent / "wpfarm")


@pytest.mark.parametrize("argv,message", [
    (["backup", "a;rm -rf /"], "not in the farm configuration"),
    (["backup", "$(id)"], "not in the farm configuration"),
    (["restore", "../x"], "not in the farm configuration"),
    (["restore", "{site}", "--to-database", "x; DROP DATABASE mysql"], "not a valid database identifier"),
    (["restore", "{site}", "--to-path", "relative/dir"], "must be an absolute path"),
    (["restore", "{site}", "--date", "yesterday"], "Invalid isoformat"),
])
def test_hostile_arguments_are_refused_with_a_clear_error(make_farm, dagster_home, capsys, argv, message):
    farm = make_farm(1)
    argv = [a.replace("{site}", farm.sites[0]["name"]) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (farm.workdir / "backups").exists()


def test_hostile_site_names_in_the_configuration_stop_the_cli(make_farm, dagster_home, capsys):
    farm = make_farm(1)
    farm.config_path.write_text(farm.config_path.read_text().replace(farm.sites[0]["name"], "'$(id)'"))
    assert main(["backup"]) == 2
    assert "not a valid DNS host name" in capsys.readouterr().err


def test_demo_backs_up_twenty_sites_and_restores_one_identically(tmp_path, db):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    try:
        done = subprocess.run([WPFARM, "demo", "--sites", "20", "--workdir", str(tmp_path / "demo"), "--prefix", "e2e"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.count(": success") == 1
        assert "per-table checksums EQUAL" in done.stdout and "EQUAL (vs" in done.stdout
        manifests = list((tmp_path / "demo" / "backups" / "sites").glob("*/*/*.json"))
        assert len(manifests) == 40
    finally:
        for i in range(1, 21):
            db.drop_database(f"wp_e2e_{i:03d}")
        db.drop_database("wp_e2e_restore_check")


def test_commands_outside_a_run_use_the_spaces_keys_from_the_environment(make_farm, s3, monkeypatch):
    from wpfarm_assets.cli import store_of
    from wpfarm_assets.config import load_config

    make_farm(1, target=f"s3://{s3.new_bucket()}/farm", s3_endpoint_url=s3.endpoint)
    monkeypatch.setenv("SPACES_ACCESS_KEY_ID", "key-from-env")
    monkeypatch.setenv("SPACES_SECRET_ACCESS_KEY", "secret-from-env")
    credentials = store_of(load_config())._s3._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("key-from-env", "secret-from-env")
