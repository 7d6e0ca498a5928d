"""Restore drills end to end: `wpfarm drill` restores every site's newest backups into scratch space
and proves them, leaves the live sites alone, and fails exactly the site whose backup is bad, with
a critical alert that reaches the SMS receiver through the real Alertmanager."""

import hashlib
import json
import re
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from services import wait_for

from resources.object_store import open_store
from wpfarm_assets.backups.drill import scratch_names
from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.backups.verify import read_manifest
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import DRILL_DATABASE_PREFIX, ConfigError, load_config, parse_config
from wpfarm_assets.core.keys import repository_prefix


def live_state(db, farm) -> dict:
    """Every live table's checksum, and every file's path, mode, mtime and sha256 (excluded ones too)."""
    state = {}
    for site in farm.sites:
        files = []
        for path in sorted(Path(site["content_path"]).parent.rglob("*")):
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                files.append((str(path), st.st_mode, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()))
        state[site["name"]] = (db.checksums(site["database"]), files)
    return state


def scratch_left(db, farm) -> list[str]:
    databases = [r[0] for r in db.query("SHOW DATABASES") if r[0].startswith(DRILL_DATABASE_PREFIX)]
    root = farm.workdir / "drills"
    return databases + (sorted(p.name for p in root.iterdir()) if root.exists() else [])


def results(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+)\s+(PASSED|FAILED|NOT DRILLED)", out, re.M))


def test_drill_passes_every_site_prints_its_rto_and_leaves_the_live_sites_alone(make_farm, dagster_home, db, capsys):
    farm = make_farm(3)
    assert main(["backup"]) == 0
    # A drill killed mid-way a day ago left its scratch database and folder: the next drill removes them.
    dead_db, dead_folder = scratch_names(farm.sites[0]["name"], datetime.now(timezone.utc) - timedelta(days=2))
    db.create_database(dead_db)
    (farm.workdir / "drills" / dead_folder / "wp-content").mkdir(parents=True)
    (farm.workdir / "drills" / "backup-1700000000").mkdir()  # not a drill's: left alone
    before = live_state(db, farm)
    capsys.readouterr()

    assert main(["drill"]) == 0
    out = capsys.readouterr().out
    assert results(out) == {s["name"]: "PASSED" for s in farm.sites}, out
    for site in farm.sites:
        line = next(x for x in out.splitlines() if x.startswith(site["name"]))
        rto = float(re.search(r"RTO ([0-9.]+) s", line)[1])
        assert 0 < rto < 300, line
        tables, rows, files = map(int, re.search(r"proven: (\d+) tables, (\d+) rows, (\d+) files", line).groups())
        manifest = read_manifest(open_store(load_config().backup.target),
                                 list_backups(open_store(load_config().backup.target), site["name"], "db")[-1])
        assert (tables, rows) == (len(manifest.tables), sum(manifest.tables.values())) and files > 0
    assert live_state(db, farm) == before
    assert scratch_left(db, farm) == ["backup-1700000000"]
    (farm.workdir / "drills" / "backup-1700000000").rmdir()

    assert main(["status"]) == 0
    status = capsys.readouterr().out
    for site in farm.sites:
        assert re.search(rf"^{re.escape(site['name'])}\s+drill\s+.*OK\s+passed .* ago, RTO", status, re.M), status


def test_a_bad_backup_fails_exactly_that_sites_drill_and_pages(make_farm, dagster_home, db, alertmanager, receivers,
                                                               pushgateway, capsys):
    farm = make_farm(4, alerts={"alertmanager_url": alertmanager, "pushgateway_url": pushgateway})
    assert main(["backup"]) == 0
    config = load_config()
    store = open_store(config.backup.target)
    flipped, replaced, missing, fine = (s.name for s in config.sites)
    newest = {s.name: list_backups(store, s.name, "db")[-1] for s in config.sites}
    data = bytearray(store.get_bytes(newest[flipped].data_key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(newest[flipped].data_key, bytes(data))
    store.put_bytes(newest[replaced].data_key, store.get_bytes(newest[fine].data_key))  # a valid dump of another site
    snapshot = read_manifest(store, list_backups(store, missing, "files")[-1]).snapshot_id
    store.delete([f"{repository_prefix(missing)}snapshots/{snapshot}"])
    receivers.clear()
    capsys.readouterr()

    assert main(["drill"]) == 1
    captured = capsys.readouterr()
    assert results(captured.out) == {flipped: "FAILED", replaced: "FAILED", missing: "FAILED", fine: "PASSED"}
    assert f"site {flipped}: restore drill failed: db: " in captured.err and "sha256" in captured.err
    assert re.search(rf"site {re.escape(replaced)}: restore drill failed: db: .*bytes, its manifest says", captured.err), \
        captured.err
    assert re.search(rf"site {re.escape(missing)}: restore drill failed: files: .*snapshot {snapshot[:8]}.* is not in",
                     captured.err)
    assert scratch_left(db, farm) == []
    wait_for(lambda: all(s in receivers.text()["sms"] for s in (flipped, replaced, missing)),
             "a critical WpfarmRestoreDrill alert per failed site, by SMS")
    sms = receivers.text()["sms"]
    assert "WpfarmRestoreDrill" in sms and fine not in sms
    # Grafana's drill panels read what the drills pushed.
    metrics = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10).read().decode()
    passed = dict(re.findall(r'^wpfarm_drill_passed\{.*site="([^"]+)".*\} (\d)', metrics, re.M))
    mine = {s: passed.get(s) for s in (flipped, replaced, missing, fine)}  # the Pushgateway is the session's
    assert mine == {flipped: "0", replaced: "0", missing: "0", fine: "1"}
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "configs/grafana/backup-health.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    assert all(m in exprs for m in ("wpfarm_drill_passed", "wpfarm_drill_rto_seconds",
                                    "wpfarm_drill_last_timestamp_seconds"))

    # The farm's secret key is not on the drill host: the drill fails saying so.
    raw = yaml.safe_load(farm.config_path.read_text())
    raw["drill"]["gnupg_home"] = farm.keyring.public_home
    farm.config_path.write_text(yaml.safe_dump(raw))
    receivers.clear()
    assert main(["drill", fine]) == 1
    captured = capsys.readouterr()
    assert results(captured.out) == {fine: "FAILED"}
    assert f"site {fine}: restore drill failed: db: " in captured.err and "secret key" in captured.err
    assert scratch_left(db, farm) == []
    wait_for(lambda: fine in receivers.text()["sms"], "the key-less drill's alert, by SMS")


def test_the_scratch_prefix_is_no_sites_database(tmp_path):
    raw = {"backup": {"target": f"file://{tmp_path}", "gpg_recipient": "A" * 40},
           "sites": [{"name": "a.example.com", "database": "wpfarm_drill_x", "content_path": "/srv/sites/a/wp-content"}]}
    try:
        parse_config(raw, "farm.yaml")
    except ConfigError as exc:
        assert "wpfarm_drill_x" in str(exc) and "scratch" in str(exc)
    else:
        raise AssertionError("a site database with the drills' prefix was accepted")
