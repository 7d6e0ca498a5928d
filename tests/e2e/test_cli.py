"""The wpfarm CLI: hostile input is refused before anything runs; the demo proves a full round trip."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from wpfarm_assets.cli import main
from wpfarm_assets.provisioning.plans import default_database_name

WPFARM = str(Path(sys.executable).parent / "wpfarm")


@pytest.mark.parametrize("argv,message", [
    (["backup", "a;rm -rf /"], "not in the farm configuration"),
    (["backup", "$(id)"], "not in the farm configuration"),
    (["restore", "../x"], "not a valid DNS host name"),
    (["restore", "{site}", "--to-database", "x; DROP DATABASE mysql"], "not a valid database identifier"),
    (["restore", "{site}", "--to-path", "relative/dir"], "must be an absolute path"),
    (["restore", "{site}", "--date", "yesterday"], "use YYYY-MM-DD"),
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


DEMO_SITES = 5  # more than a step's 4 sites at once; scripts/demo builds the default 20 (checked below)


def test_demo_backs_up_its_sites_and_restores_one_identically_then_site_create_adds_one(
        tmp_path, db, monkeypatch):
    from wpfarm_assets.cli import parser

    assert parser().parse_args(["demo"]).sites == 20  # what scripts/demo and the README build
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    env = dict(os.environ)
    new = "new.e2e.wpfarm.test"
    new_db = default_database_name(new)
    try:
        done = subprocess.run([WPFARM, "demo", "--sites", str(DEMO_SITES), "--workdir", str(tmp_path / "demo"),
                               "--prefix", "e2e"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        runs = re.findall(r"^run \S+: (\w+).*: (success|FAILED)$", done.stdout, re.M)
        assert runs == [(job, "success") for job in (
            "check_infrastructure", "provision_sites", "back_up_sites", "apply_retention", "check_backup_health",
            "restore_site", "drill_sites", "check_backup_health", "verify_backups",
            # point-in-time recovery on the demo's own server with binary logs
            "back_up_sites", "apply_retention", "check_backup_health", "archive_binlogs", "archive_binlogs",
            "restore_site")], done.stdout
        assert "per-table checksums EQUAL" in done.stdout and "EQUAL (vs" in done.stdout
        assert "per-table checksums EQUAL to the moment before the mistake" in done.stdout
        assert re.search(r"then a plugin deletes every post: 0 posts", done.stdout)
        assert done.stdout.count(" PASSED  RTO ") == DEMO_SITES  # every site drilled
        sites = tmp_path / "demo" / "backups" / "sites"
        assert len(list(sites.glob("*/db/*.json"))) == len(list(sites.glob("*/files/*.json"))) == DEMO_SITES

        env["WPFARM_CONFIG"] = str(tmp_path / "demo" / "farm.yaml")
        assert f"export WPFARM_RESTIC_PASSWORD=$(cat {tmp_path / 'demo' / 'restic-password'})" in done.stdout
        assert (f"WPFARM_RESTIC_PASSWORD=$(cat {tmp_path / 'demo' / 'restic-password'}) "
                f"{Path(WPFARM).parent / 'dagster'} dev") in done.stdout
        env["WPFARM_RESTIC_PASSWORD"] = (tmp_path / "demo" / "restic-password").read_text()  # as the demo says
        created = subprocess.run([WPFARM, "site", "create", new], env=env, capture_output=True, text=True, timeout=300)
        assert created.returncode == 0, created.stdout[-3000:] + created.stderr[-3000:]
        assert f"provision_sites {new}: success" in created.stdout and f"back_up_sites {new}: success" in created.stdout
        assert f"name: \"{new}\"" in (tmp_path / "demo" / "farm.yaml").read_text()
        instance = dg.DagsterInstance.get()  # what the web UI shows
        for asset in ("site_provisioning", "database_dump", "file_archive"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) >= {new}, asset
        assert db.database_exists(new_db) and db.user_exists(new_db, "%")
        assert (tmp_path / "demo" / "sites" / new / "wp-content").is_dir()
        assert len(list((tmp_path / "demo" / "backups" / "sites" / new).glob("*/*.json"))) == 2
        assert {a: new in partitions for a, partitions in web_ui_materialized_partitions(env).items()} == {
            "site_provisioning": True, "database_dump": True, "file_archive": True}
    finally:
        for i in range(1, DEMO_SITES + 1):
            db.drop_database(f"wp_e2e_{i:03d}")
        db.drop_database("wp_e2e_restore_check")
        db.drop_database(new_db)
        db.query(f"DROP USER IF EXISTS '{new_db}'@'%'")


ASSET_PARTITIONS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {
  ... on AssetNode { assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions } } } } }"""


def web_ui_materialized_partitions(env: dict) -> dict[str, list[str]]:
    """What the web UI shows: the real dagster-webserver on the instance, asked through its GraphQL API."""
    import json
    import urllib.request

    from services import free_port, serving

    port = free_port()
    argv = [str(Path(sys.executable).parent / "dagster-webserver"), "-m", "wpfarm_assets.definitions",
            "-h", "127.0.0.1", "-p", str(port)]
    with serving(argv, port, timeout=120, env=env):  # env: the farm's DAGSTER_HOME and WPFARM_CONFIG
        shown = {}
        for asset in ("site_provisioning", "database_dump", "file_archive"):
            body = json.dumps({"query": ASSET_PARTITIONS, "variables": {"path": [asset]}}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                node = json.load(response)["data"]["assetNodeOrError"]
            shown[asset] = node["assetPartitionStatuses"]["materializedPartitions"]
        return shown


def test_commands_outside_a_run_use_the_spaces_keys_from_the_environment(make_farm, s3, monkeypatch):
    from wpfarm_assets.cli import store_of
    from wpfarm_assets.core.config import load_config

    make_farm(1, target=f"s3://{s3.new_bucket()}/farm", s3_endpoint_url=s3.endpoint)
    monkeypatch.setenv("SPACES_ACCESS_KEY_ID", "key-from-env")
    monkeypatch.setenv("SPACES_SECRET_ACCESS_KEY", "secret-from-env")
    credentials = store_of(load_config())._s3._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("key-from-env", "secret-from-env")


def test_site_create_appends_to_the_inventory_keeping_comments_or_changes_nothing(tmp_path):
    import shutil

    from wpfarm_assets.core.config import DEFAULT_CONFIG_PATH, ConfigError, Site, add_site_to_file, load_config

    path = tmp_path / "farm.yaml"
    shutil.copy(DEFAULT_CONFIG_PATH, path)
    site = Site(name="shop.example.com", database="wp_shop", content_path="/srv/sites/shop.example.com/wp-content")
    add_site_to_file(path, site)
    assert [s.name for s in load_config(path).sites] == ["blog.example.com", "shop.example.com"]
    assert path.read_text().startswith(DEFAULT_CONFIG_PATH.read_text())  # appended: every comment kept

    before = path.read_text()
    with pytest.raises(ConfigError, match="listed twice"):
        add_site_to_file(path, site)
    assert path.read_text() == before  # a refused site leaves the file as it was
    sites_not_last = "# our farm\nbackup: {target: 'file:///b', gpg_recipient: X}\nsites: []\nalerts: {}\n"
    path.write_text(sites_not_last)
    with pytest.raises(ConfigError, match="put `sites:` last"):
        add_site_to_file(path, Site(name="x.example.com", database="wp_x", content_path="/srv/x"))
    assert path.read_text() == sites_not_last


@pytest.mark.parametrize("argv", [["site", "create", "$(id).example.com"], ["site", "create", "ok.example.com", "--database", "x;y"],
                                  ["site", "create", "ok.example.com", "--content-path", "../etc"]])
def test_site_create_refuses_hostile_input_before_touching_the_inventory(make_farm, dagster_home, argv):
    farm = make_farm(1)
    before = farm.config_path.read_text()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and farm.config_path.read_text() == before


def test_site_create_handles_a_flow_style_inventory_and_reports_bad_yaml(tmp_path):
    from wpfarm_assets.core.config import ConfigError, Site, add_site_to_file, load_config

    path = tmp_path / "farm.yaml"
    path.write_text("backup: {target: 'file:///b', gpg_recipient: X}\nsites: [{name: a.example.com, database: wp_a, "
                    "content_path: /srv/a/wp-content}]\n")
    add_site_to_file(path, Site(name="b.example.com", database="wp_b", content_path="/srv/b/wp-content"))
    assert [s.name for s in load_config(path).sites] == ["a.example.com", "b.example.com"]
    path.write_text("backup: {target: 'file:///b'\nsites: []\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        add_site_to_file(path, Site(name="b.example.com", database="wp_b", content_path="/srv/b/wp-content"))
