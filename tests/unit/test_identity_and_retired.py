"""Plain functions: which addresses are a site's (identity.py), and what a retired site's state is
(retired.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from wpfarm_assets.backups.health import SiteBackups
from wpfarm_assets.backups.identity import host, identity_problem, known_addresses, table_prefix
from wpfarm_assets.backups.retired import beyond_tiers, in_place_problem
from wpfarm_assets.core.keys import KINDS, BackupKey


@pytest.mark.parametrize("addresses,known,ok", [
    ({"siteurl": "https://shop.example.com", "home": "https://www.shop.example.com/"}, None, True),
    ({"siteurl": "http://SHOP.example.com:8080/wp"}, None, True),  # scheme, port, path and case do not matter
    ({"siteurl": "https://other.example.com"}, None, False),
    ({"siteurl": "https://brand.example"}, ["https://brand.example"], True),  # what the site said before
    ({"siteurl": "https://brand.example", "home": "https://evil.example"}, ["https://brand.example"], False),
    ({}, None, True),  # no WordPress there: nothing to judge
])
def test_an_address_belongs_to_the_site_by_its_name_or_what_it_said_before(addresses, known, ok):
    problem = identity_problem("shop.example.com", addresses, known)
    assert (problem is None) is ok, problem
    if not ok:
        assert all(value in problem for value in addresses.values())  # it names what the database holds


def test_a_foreign_address_is_never_adopted_as_the_sites():
    assert known_addresses("a.example", {"siteurl": "https://b.example"}, ["https://a.example"]) == ["https://a.example"]
    assert known_addresses("a.example", {"siteurl": "https://a.example"}, None) == ["https://a.example"]
    assert known_addresses("a.example", {}, None) == ["a.example"]
    assert host("not a url") == "not a url" and host("https://www.x.example") == "x.example"


def test_the_table_prefix_is_the_one_with_every_core_table():
    assert table_prefix(["wp_2_options", "shop_options", "shop_posts", "shop_users"]) == "shop_"
    assert table_prefix(["wp_options", "wp_posts"]) is None


def backups(days: int) -> SiteBackups:
    start = datetime(2026, 1, 1, 2, tzinfo=timezone.utc)
    keys = [BackupKey("gone.example", "db", start + timedelta(days=d)) for d in range(days)]
    return SiteBackups(None, {kind: (keys if kind == "db" else []) for kind in KINDS}, {})


def test_retention_runs_for_a_retired_site_only_while_the_tiers_would_delete_something():
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert not beyond_tiers(backups(14), now, 14, 26, 12)
    assert beyond_tiers(backups(15), now, 14, 0, 0)
    assert not beyond_tiers(backups(15), now, 14, 26, 12)  # the 15th is a weekly
    assert not beyond_tiers(backups(1), now, 0, 0, 0)  # the newest is never deleted
    assert not beyond_tiers(backups(3), datetime(2026, 1, 1, tzinfo=timezone.utc), 1, 0, 0)  # nor future ones


def test_a_retired_site_restores_only_elsewhere():
    assert in_place_problem("gone.example", "all", "wp_x", "/srv/x") is None
    assert in_place_problem("gone.example", "db", "wp_x", None) is None
    assert "--to-path" in in_place_problem("gone.example", "all", "wp_x", None)
    assert "retired" in in_place_problem("gone.example", "files", "wp_x", None)
