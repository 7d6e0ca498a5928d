import pytest

from wpfarm_assets.core.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config

GOOD = {
    "database": {"host": "127.0.0.1", "port": 3306, "user": "root"},
    "backup": {"target": "file:///var/backups/wpfarm", "s3_endpoint_url": "http://127.0.0.1:9000",
               "gpg_recipient": "0123456789ABCDEF0123456789ABCDEF01234567"},
    "sites": [{"name": "blog.example.com", "database": "wp_blog",
               "content_path": "/srv/sites/blog.example.com/wp-content"}],
}


def with_site(**changes):
    site = {**GOOD["sites"][0], **changes}
    return {**GOOD, "sites": [site]}


def test_the_documented_shape_loads(tmp_path):
    import yaml

    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    config = load_config(path)
    assert config.site("blog.example.com").database == "wp_blog"
    assert config.backup.s3_endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize("name", ["a;rm -rf /", "../x", "$(id)", "`id`", "x y", "-leading.example.com",
                                  "Upper.Example.com", "a..b", "", "a/b", "x" * 64 + ".com", "site.", "é.com"])
def test_hostile_or_invalid_site_names_are_refused_at_load_time(name):
    with pytest.raises(ConfigError) as err:
        parse_config(with_site(name=name))
    assert "not a valid DNS host name" in str(err.value)


@pytest.mark.parametrize("database", ["wp;drop", "wp blog", "../wp", "wp`x", "$(id)", ""])
def test_hostile_database_names_are_refused(database):
    with pytest.raises(ConfigError, match="database identifier"):
        parse_config(with_site(database=database))


@pytest.mark.parametrize("path", ["relative/wp-content", "/srv/../etc", "/srv/x\nrm"])
def test_content_paths_must_be_absolute_and_plain(path):
    with pytest.raises(ConfigError, match="absolute path"):
        parse_config(with_site(content_path=path))


def test_unknown_keys_are_errors_with_their_location():
    with pytest.raises(ConfigError, match=r"backup\.gpg_recpient"):
        parse_config({**GOOD, "backup": {**GOOD["backup"], "gpg_recpient": "x"}})
    with pytest.raises(ConfigError, match=r"sites\.0\.owner"):
        parse_config(with_site(owner="me"))


def test_duplicate_sites_are_errors():
    data = {**GOOD, "sites": GOOD["sites"] * 2}
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config(data)


@pytest.mark.parametrize("target", ["/var/backups", "ftp://x/y", "s3://ab", "file://relative"])
def test_targets_must_be_file_or_s3_urls(target):
    with pytest.raises(ConfigError, match="backup.target"):
        parse_config({**GOOD, "backup": {**GOOD["backup"], "target": target}})


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read farm configuration"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_unknown_site_lookup_is_a_clear_error():
    with pytest.raises(ConfigError, match="not in the farm configuration"):
        parse_config(GOOD).site("other.example.com")


def test_the_shipped_farm_yaml_has_the_seed_topology():
    topology = load_config(DEFAULT_CONFIG_PATH).topology
    counts = {tier: (spec.count, spec.size, spec.role) for tier, spec in topology.tiers.items()}
    assert counts == {"manager": (3, "s-8vcpu-16gb", "manager"), "cache": (3, "s-4vcpu-8gb", "worker"),
                      "worker": (20, "s-8vcpu-16gb", "worker"), "database": (3, "m-4vcpu-32gb", "worker"),
                      "storage": (2, "s-4vcpu-8gb", "worker"), "monitoring": (2, "s-4vcpu-8gb", "worker")}
    assert topology.droplet_names("storage") == ["wpfarm-storage-01", "wpfarm-storage-02"]
    assert topology.node_labels("database") == {"tier": "database", "galera": "true"}


@pytest.mark.parametrize("tiers, where", [
    ({"web": {"count": 1, "size": "s-1vcpu-1gb"}}, "topology.tiers.web"),
    ({"worker": {"count": -1, "size": "s-1vcpu-1gb"}}, "topology.tiers.worker.count"),
    ({"worker": {"count": 1, "size": "s-1vcpu-1gb; rm -rf /"}}, "topology.tiers.worker.size"),
    ({"worker": {"count": 1, "size": "s-1vcpu-1gb", "role": "leader"}}, "topology.tiers.worker.role"),
    ({"worker": {"count": 1, "size": "s-1vcpu-1gb", "labels": {"$(id)": "x"}}}, "topology.tiers.worker.labels"),
    ({"worker": {"count": 1, "size": "s-1vcpu-1gb", "tags": ["a b"]}}, "topology.tiers.worker.tags.0"),
])
def test_invalid_topology_is_refused_naming_the_entry(tiers, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        parse_config({**GOOD, "topology": {"tiers": tiers}})


@pytest.mark.parametrize("section", [{"cache": {"redis": "host:6379; FLUSHALL"}}, {"storage": {"gluster_volume": "-x"}}])
def test_hostile_tier_addresses_are_refused(section):
    with pytest.raises(ConfigError):
        parse_config({**GOOD, **section})


def test_two_sites_sharing_a_database_are_refused():
    second = {**GOOD["sites"][0], "name": "shop.example.com"}
    with pytest.raises(ConfigError, match="share the database 'wp_blog'"):
        parse_config({**GOOD, "sites": [GOOD["sites"][0], second]})
