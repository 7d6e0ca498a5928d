"""`wpfarm clone`: a staging copy at a new address. Every address rewritten in every table of the
site's prefix, PHP-serialized values that PHP read before it reads after (php-cli's unserialize),
`guid` left alone, a table without a primary key handled, search engines asked to stay away; posts,
comments and files equal; the production site untouched; names that are a site's refused; --delete
removes the clone and nothing else."""

import subprocess
from pathlib import Path

from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main
from wpfarm_assets.provisioning.plans import default_database_name

WIDGET = r"""echo serialize([2 => ['title' => 'Visit ☕ café', 'text' => '<a href="https://%1$s/about">about</a> //%1$s/x.css',
  'nested' => serialize(['logo' => 'https://%1$s/wp-content/uploads/logo.png'])], '_multiwidget' => 1]);"""


def php_serialized(name: str) -> str:
    return subprocess.run(["php", "-r", WIDGET.replace("%1$s", name)], capture_output=True, text=True,
                          check=True).stdout


def unserializes(values: list[bytes]) -> list[bool]:
    script = "while (($l = fgets(STDIN)) !== false) echo (@unserialize(hex2bin(trim($l))) === false ? 0 : 1), \"\\n\";"
    out = subprocess.run(["php", "-r", script], input="\n".join(v.hex() for v in values) + "\n", capture_output=True,
                         text=True, check=True).stdout
    return [line == "1" for line in out.split()]


def hexes(db, sql: str) -> list[bytes]:
    return [bytes.fromhex(row[0]) for row in db.query(sql)]


def test_a_clone_reads_its_new_address_everywhere_and_production_is_untouched(make_farm, db, keyring, dagster_home,
                                                                               tmp_path, capsys):
    farm = make_farm(1, sections={"provisioning": {"sites_root": str(tmp_path / "srv")}})
    site = farm.sites[0]
    name, prod = site["name"], site["database"]
    widget = php_serialized(name)
    db.query(f"INSERT INTO `{prod}`.wp_options (option_name, option_value, autoload) VALUES "
             f"('widget_text', X'{widget.encode().hex()}', 'yes'), "
             f"('theme_mods_json', '{{\"header\":\"https:\\\\/\\\\/{name}\\\\/h.jpg\"}}', 'yes')")
    db.query(f"CREATE TABLE `{prod}`.wp_redirects (source TEXT, target TEXT) "  # no primary key; WordPress's collation
             "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci")
    db.query(f"INSERT INTO `{prod}`.wp_redirects VALUES ('/old', 'https://{name}/new'), ('/old', 'https://{name}/new')")
    assert main(["backup"]) == 0
    before = db.checksums(prod)
    serialized_before = hexes(db, f"SELECT HEX(option_value) FROM `{prod}`.wp_options WHERE option_value LIKE 'a:%'")
    assert serialized_before and all(unserializes(serialized_before))

    clone = f"staging.{name}"
    capsys.readouterr()
    assert main(["clone", name, clone, "--gnupg-home", keyring.home]) == 0
    out = capsys.readouterr().out
    assert f"at https://{clone}" in out and "wp_options:" in out and "wp_redirects: 2 row(s) rewritten" in out, out
    database = next(line for line in out.splitlines() if "database " in line).split("database ")[1].split(" ")[0]
    try:
        options = dict(db.query(f"SELECT option_name, option_value FROM `{database}`.wp_options WHERE option_name IN "
                                "('siteurl', 'home', 'blog_public', 'theme_mods_json')"))
        assert options["siteurl"] == options["home"] == f"https://{clone}" and options["blog_public"] == "0"
        assert options["theme_mods_json"] == f'{{"header":"https:\\/\\/{clone}\\/h.jpg"}}'
        after = hexes(db, f"SELECT HEX(option_value) FROM `{database}`.wp_options WHERE option_value LIKE 'a:%'")
        assert len(after) == len(serialized_before) and all(unserializes(after))  # 0 broken
        widget_after = hexes(db, f"SELECT HEX(option_value) FROM `{database}`.wp_options WHERE option_name = 'widget_text'")[0]
        assert name.encode() not in widget_after.replace(clone.encode(), b"") and widget_after.count(clone.encode()) == 3
        assert db.query(f"SELECT COUNT(*) FROM `{database}`.wp_redirects WHERE target = 'https://{clone}/new'")[0][0] == "2"
        guids = db.query(f"SELECT COUNT(*) FROM `{database}`.wp_posts WHERE guid LIKE '%//{name}/%'")[0][0]
        assert int(guids) > 0  # identifiers, not links: left alone
        for table in ("wp_posts", "wp_comments"):
            assert db.query(f"SELECT COUNT(*) FROM `{database}`.{table}") == db.query(f"SELECT COUNT(*) FROM `{prod}`.{table}")
        clone_root = tmp_path / "srv" / clone
        assert tree_digest(clone_root)[1] == tree_digest(farm.site_root(0))[1]  # the same files
        assert db.checksums(prod) == before  # production only read

        capsys.readouterr()
        main(["status"])
        assert f"{clone}  clone of {name} at https://{clone}" in capsys.readouterr().out

        # Names, databases and folders that are a site's or exist, and bad input: one line, nothing written.
        for argv, words in (([name, name], "is a site of the farm"),
                            ([name, "other.example.com", "--database", prod], "exists and is a site's"),
                            ([name, "other.example.com", "--content-path", f"{farm.site_root(0)}/x/wp-content"],
                             "overlaps"),
                            ([name, "Not_A_Host"], "not a valid DNS host name"),
                            ([name, "other.example.com", "--url", "staging.example.com"], "http(s)://host"),
                            ([name, "other.example.com", "--date", "yesterday"], "YYYY-MM-DD")):
            capsys.readouterr()
            assert main(["clone", *argv, "--gnupg-home", keyring.home]) == 2, argv
            err = capsys.readouterr().err
            assert words in err and len(err.strip().splitlines()) == 1, err
        assert not db.database_exists(default_database_name("other.example.com"))
        assert not (tmp_path / "srv" / "other.example.com").exists()
        assert main(["clone", "--delete", name]) == 2
        assert "is not a clone" in capsys.readouterr().err
    finally:
        assert main(["clone", "--delete", clone]) == 0
    assert not db.database_exists(database) and not Path(tmp_path / "srv" / clone).exists()
    assert db.checksums(prod) == before and db.database_exists(prod)
