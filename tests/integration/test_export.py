"""`wpfarm export`: one zip a site owner can import anywhere: its SQL loads into an empty database
with the same tables, its wp-content is the backed-up tree, wp-config.php has no secrets unless
asked for; its sha256 is the one printed; a failed export leaves nothing behind."""

import hashlib
import re
import subprocess
import zipfile
from pathlib import Path

from wpfarm_assets.backups.export import redact_config
from wpfarm_assets.cli import main

CONFIG = b"""<?php
define('DB_NAME', 'wp');
define( 'DB_PASSWORD', 'hunter2\\'s "pass"' );
define("AUTH_KEY", "k3y-with-'quotes'");
define('NONCE_SALT', '');
$table_prefix = 'wp_';
"""


def test_the_secrets_of_wp_config_are_blanked_and_nothing_else():
    redacted = redact_config(CONFIG)
    assert b"hunter2" not in redacted and b"k3y" not in redacted
    assert b"define( 'DB_PASSWORD', 'set-your-own' );" in redacted and b'define("AUTH_KEY", "set-your-own");' in redacted
    assert b"define('DB_NAME', 'wp');" in redacted and b"$table_prefix = 'wp_';" in redacted


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_export_loads_anywhere_and_keeps_no_secrets(make_farm, db, keyring, dagster_home, tmp_path, capsys):
    farm = make_farm(1)
    site = farm.sites[0]
    (farm.site_root(0) / "wp-config.php").write_bytes(CONFIG)
    assert main(["backup"]) == 0
    out_file = tmp_path / "export" / "site.zip"
    out_file.parent.mkdir()
    capsys.readouterr()
    assert main(["export", site["name"], "--to", str(out_file), "--gnupg-home", keyring.home]) == 0
    printed = re.search(r"^sha256 ([0-9a-f]{64})  ", capsys.readouterr().out, re.M)[1]
    assert printed == hashlib.sha256(out_file.read_bytes()).hexdigest()
    assert [p.name for p in out_file.parent.iterdir()] == ["site.zip"]  # no partial file left

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(out_file) as zf:
        assert zf.testzip() is None
        zf.extractall(unpacked)
    assert site["name"] in (unpacked / "README.txt").read_text()
    sql = (unpacked / "database.sql").read_bytes()
    assert b"CREATE TABLE" in sql and not sql.startswith(b"/*M!999999")  # MySQL's client refuses the sandbox line
    config = (unpacked / "wp-config.php").read_bytes()
    assert b"hunter2" not in config and b"k3y" not in config and b"DB_NAME" in config
    got, source = tree(unpacked / "wp-content"), tree(Path(site["content_path"]))
    assert got == {k: v for k, v in source.items() if k in got}
    assert all(k.startswith(("cache/", "upgrade/", "updraft/")) or k.endswith(".log") for k in set(source) - set(got))
    assert len(got) > 20  # what the backup holds: the backups' excludes (cache, logs, backup plugins) left out

    scratch = f"{site['database']}_export"
    db.create_database(scratch)
    try:
        with open(unpacked / "database.sql", "rb") as sql:  # stock tools: the mariadb client
            subprocess.run(["mariadb", "-h127.0.0.1", f"-P{db.port}", "-uroot", scratch], stdin=sql, check=True)
        assert db.checksums(scratch) == db.checksums(site["database"])
    finally:
        db.drop_database(scratch)

    capsys.readouterr()
    assert main(["export", site["name"], "--to", str(out_file), "--gnupg-home", keyring.home]) == 2  # exists
    assert "exists: refused" in capsys.readouterr().err and printed == hashlib.sha256(out_file.read_bytes()).hexdigest()
    with_secrets = tmp_path / "export" / "with-secrets.zip"
    assert main(["export", site["name"], "--to", str(with_secrets), "--include-secrets", "--gnupg-home", keyring.home]) == 0
    with zipfile.ZipFile(with_secrets) as zf:
        assert zf.read("wp-config.php") == CONFIG

    capsys.readouterr()
    assert main(["export", site["name"], "--to", str(tmp_path / "nowhere" / "x.zip")]) == 2
    assert "does not exist" in capsys.readouterr().err
