"""Configuration and restore refuse what is dangerous, naming the entry: system directories and
databases as a site's, two sites sharing or nesting a folder, a restore over / or over another site."""

import re

import pytest
import yaml

from wpfarm_assets.cli import main
from wpfarm_assets.core.config import ConfigError, parse_config


def farm_with(*sites: dict) -> dict:
    return {"backup": {"target": "file:///var/backups/wpfarm", "gpg_recipient": "A" * 40}, "sites": list(sites)}


def site(name: str, database: str, content_path: str) -> dict:
    return {"name": name, "database": database, "content_path": content_path}


@pytest.mark.parametrize("entry,message", [
    (site("a.example", "wp_a", "/etc"), "system directory (/etc)"),
    (site("a.example", "wp_a", "/etc/ssh/wp-content"), "system directory (/etc)"),
    (site("a.example", "wp_a", "/"), "root directory"),
    (site("a.example", "wp_a", "/wp-content"), "root directory"),
    (site("a.example", "wp_a", "//etc/wp-content"), "system directory (/etc)"),  # POSIX keeps a leading //
    (site("a.example", "wp_a", "//wp-content"), "root directory"),
    (site("a.example", "mysql", "/srv/sites/a/wp-content"), "'mysql' is a system database"),
    (site("a.example", "information_schema", "/srv/sites/a/wp-content"), "system database"),
])
def test_dangerous_site_entries_are_refused_naming_them(entry, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        parse_config(farm_with(entry), "farm.yaml")
    assert "sites.0" in str(refused.value)


@pytest.mark.parametrize("second", ["/srv/sites/a/wp-content", "/srv/sites/a/inner/wp-content"])
def test_two_sites_may_not_share_or_nest_their_folders(second):
    with pytest.raises(ConfigError, match="'a.example' and 'b.example' share or nest"):
        parse_config(farm_with(site("a.example", "wp_a", "/srv/sites/a/wp-content"),
                               site("b.example", "wp_b", second)), "farm.yaml")


def test_a_normal_farm_still_loads():
    parse_config(farm_with(site("a.example", "wp_a", "/srv/sites/a/wp-content"),
                           site("ab.example", "wp_ab", "/srv/sites/ab/wp-content")), "farm.yaml")


@pytest.mark.parametrize("argv,message", [
    (["--to-path", "/"], "--to-path '/' is the root directory"),
    (["--to-path", "/etc"], "system directory"),
    (["--to-path", "//"], "root directory"),
    (["--to-database", "{other_db}"], "is the database of site {other}"),
    (["--to-path", "{other_root}/x"], "inside the site root of {other}"),
])
def test_restore_over_the_system_or_another_site_needs_force(make_farm, dagster_home, capsys, argv, message):
    farm = make_farm(2)
    mine, other = farm.sites[0], farm.sites[1]
    values = {"other": other["name"], "other_db": other["database"], "other_root": str(farm.site_root(1))}
    argv = [a.format(**values) for a in argv]
    assert main(["restore", mine["name"], *argv]) == 2
    err = capsys.readouterr().err
    assert message.format(**values) in err and "--force" in err
    assert yaml.safe_load(farm.config_path.read_text())["sites"] == farm.sites  # nothing changed


def test_at_names_one_backup_of_one_kind(make_farm, dagster_home, capsys):
    farm = make_farm(1)
    assert main(["restore", farm.sites[0]["name"], "--at", "20260101T000000Z"]) == 2
    assert "--kind db or --kind files" in capsys.readouterr().err
