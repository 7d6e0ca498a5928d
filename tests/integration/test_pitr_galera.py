"""Point-in-time recovery on a real 3-node Galera cluster (tests/services.py, one per session):
dumps from a Synced node with their GTID and no global lock, the binary-log archive continuous by
GTID across a killed node, a gap when logs are purged before they were archived, and restores to a
second that equal the database as it was (CHECKSUM TABLE of every table)."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from resources.mariadb import MariaDB
from resources.ssh import LocalRunner
from wpfarm_assets.cli import instance, main, run_job
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.manifest import BinlogManifest


def client(galera, i: int) -> MariaDB:
    host, port = galera.nodes[i].rsplit(":", 1)
    return MariaDB(LocalRunner(), host, int(port), "root", None)


def a_second_later() -> datetime:
    """A moment T with every write before it in an earlier second, and none after it in the same one."""
    time.sleep(1.1)
    t = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(1.1)
    return t


def post(database: str, title: str) -> str:
    return (f"INSERT INTO {database}.wp_posts (post_title, post_content, post_excerpt, to_ping, pinged, "
            f"post_content_filtered) VALUES ('{title}', 'body of {title}', '', '', '', '')")


def archived(farm) -> list[BinlogManifest]:
    return [BinlogManifest.from_bytes(p.read_bytes(), str(p)) for p in sorted((farm.workdir / "backups/binlogs").glob("*.json"))]


@pytest.fixture
def galera_farm(galera, make_farm, dagster_home):
    """Two WordPress-shaped sites on the cluster (made through node 1), dumped and archived from
    the first Synced node of database.galera_nodes."""
    return make_farm(2, server=client(galera, 0), sections={"database": {"galera_nodes": galera.nodes}})


def test_a_mistake_through_one_node_is_undone_to_the_second_from_the_archive(galera, galera_farm, capsys):
    farm, db = galera_farm, client(galera, 0)
    a, b = farm.sites[0], farm.sites[1]
    assert main(["backup"]) == 0  # the nightly dump (and files)
    dump = json.loads(next((farm.workdir / "backups/sites" / a["name"] / "db").glob("*.json")).read_text())
    assert dump["database_node"] == galera.nodes[0] and dump["node_state"] == "Synced"
    assert dump["gtid"].startswith(f"{galera.domain_id}-") or f",{galera.domain_id}-" in dump["gtid"]
    assert dump["gtid_domain"] == galera.domain_id

    for n in range(5):  # the day's writes, through node 2
        galera.sql(1, post(a["database"], f"order {n}") + f"; UPDATE {a['database']}.wp_options SET option_value = "
                   f"'{n}' WHERE option_name = 'blogname'; " + post(b["database"], f"b order {n}"))
    t = a_second_later()
    at_t = db.checksums(a["database"])
    posts_at_t = db.query(f"SELECT COUNT(*) FROM {a['database']}.wp_posts")
    galera.sql(2, f"DELETE FROM {a['database']}.wp_posts")  # the mistake, through node 3
    galera.sql(1, post(b["database"], "b after the mistake"))
    b_now = db.checksums(b["database"])
    assert db.checksums(a["database"]) != at_t

    assert main(["binlogs"]) == 0
    out = capsys.readouterr().out
    assert f"from {galera.nodes[0]}:" in out and "ok: archived until" in out

    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", t.isoformat().replace("+00:00", "Z"), "--kind", "db"]) == 0
    out = capsys.readouterr().out
    assert "restored into" in out and "transaction(s) from" in out
    for node in range(3):  # every table as it was at T, on every node; the other site untouched
        assert client(galera, node).checksums(a["database"]) == at_t
    assert db.checksums(b["database"]) == b_now

    # A staging clone of the site as it was at T: its posts are those of T.
    clone = f"staging.{a['name']}"
    assert main(["clone", a["name"], clone, "--time", t.isoformat().replace("+00:00", "Z"), "--content-path",
                 f"{farm.workdir}/clones/{clone}/wp-content", "--gnupg-home", farm.keyring.home]) == 0
    clone_db = next(line for line in capsys.readouterr().out.splitlines() if "database " in line).split(
        "database ")[1].split(" ")[0]
    assert db.query(f"SELECT COUNT(*) FROM {clone_db}.wp_posts") == posts_at_t
    assert main(["clone", "--delete", clone]) == 0

    # The replay gave the replayed transactions new GTIDs: the next archive carries on from them.
    galera.sql(1, post(a["database"], "after the restore"))
    assert main(["binlogs"]) == 0
    pieces = archived(farm)
    assert all(later.start_seq <= earlier.end_seq for earlier, later in zip(pieces, pieces[1:], strict=False))
    assert pieces[-1].end_seq > pieces[0].end_seq

    # A drill replays the site's logs on top of its dump, to the archive's end: the PITR RTO.
    capsys.readouterr()
    assert main(["drill", a["name"]]) == 0
    out = capsys.readouterr().out
    assert re.search(r"PASSED .* binary logs to \d\d:\d\d:\d\d: \d+ transactions, .* s/MB\)", out), out


def test_the_archive_carries_on_from_another_node_when_its_node_is_killed(galera, galera_farm, capsys):
    from resources.mariadb import Node

    farm = galera_farm
    a = farm.sites[0]
    assert main(["backup", a["name"]]) == 0
    assert main(["binlogs"]) == 0
    galera.sql(1, post(a["database"], "before the kill"))
    flush = Node.flush_binary_logs

    def flush_then_die(node):  # SIGKILL the node the archive reads from, in the middle of a run
        logs = flush(node)
        galera.kill(0)
        return logs

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Node, "flush_binary_logs", flush_then_die)
            assert main(["binlogs"]) == 1
        err = capsys.readouterr().err  # the node is named (its connection lost), or mariadb-binlog's copy failed
        assert galera.nodes[0] in err or "mariadb-binlog exited with status" in err, err
        galera.sql(1, post(a["database"], "while node 1 is down"))
        t = a_second_later()
        at_t = client(galera, 1).checksums(a["database"])
        galera.sql(2, f"DELETE FROM {a['database']}.wp_comments")
        capsys.readouterr()
        assert main(["binlogs"]) == 0
        out = capsys.readouterr().out
        assert f"from {galera.nodes[1]}:" in out and f"passed over database node {galera.nodes[0]}" in out
        assert "GAP" not in out
        pieces = archived(farm)
        assert {p.node for p in pieces} == {galera.nodes[0], galera.nodes[1]}
        for earlier, later in zip(pieces, pieces[1:], strict=False):  # continuous by GTID across the switch
            assert later.start_seq <= earlier.end_seq
        assert not list((farm.workdir / "backups/binlogs/gaps").glob("*.json"))
        assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", t.isoformat(), "--kind", "db"]) == 0
        assert client(galera, 1).checksums(a["database"]) == at_t
        # The database tier reads every node: the dead one is named, the tier still serves.
        tier = run_job("check_infrastructure", load_config(), instance()).get_asset_check_evaluations()
        database = next(e for e in tier if e.asset_key.to_user_string() == "database_tier")
        assert not database.passed and database.severity == dg.AssetCheckSeverity.WARN
        assert f"node {galera.nodes[0]} does not answer" in database.description
        assert "cluster has 2 of 3 nodes" in database.description
    finally:
        galera.start(0)


def test_logs_purged_on_every_node_before_they_were_archived_are_a_gap(galera, make_farm, dagster_home, alertmanager,
                                                                      capsys):
    from resources.alerts import AlertmanagerResource

    farm = make_farm(1, server=client(galera, 0), alerts={"alertmanager_url": alertmanager},
                     sections={"database": {"galera_nodes": galera.nodes}})
    a = farm.sites[0]
    assert main(["backup", a["name"]]) == 0
    galera.sql(1, post(a["database"], "archived"))
    before_gap = a_second_later()
    assert main(["binlogs"]) == 0  # the archive reaches past before_gap
    galera.sql(1, post(a["database"], "lost with the purged logs"))
    in_gap = a_second_later()
    for node in range(3):
        galera.sql(node, "FLUSH BINARY LOGS")
        current = galera.sql(node, "SHOW MASTER STATUS").split("\t")[0]
        galera.sql(node, f"PURGE BINARY LOGS TO '{current}'")
    galera.sql(1, post(a["database"], "after the gap"))
    capsys.readouterr()
    assert main(["binlogs"]) == 1  # archived what there is, and the check is critical
    out = capsys.readouterr().out
    assert "GAP: GTIDs" in out and "were never archived" in out and "ERROR:" in out, out
    firing = AlertmanagerResource(url=alertmanager).firing("WpfarmBinlogArchive")
    assert [(f["kind"], f["severity"]) for f in firing] == [("binlog-gap", "critical")]
    assert main(["status"]) == 1
    assert "binlog-gap" in capsys.readouterr().out
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", in_gap.isoformat(), "--kind", "db", "--to-database",
                 f"{a['database']}_r"]) == 1
    assert "gap" in capsys.readouterr().err
    assert not client(galera, 0).database_exists(f"{a['database']}_r")
    # Before the gap, the site still comes back.
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", before_gap.isoformat(), "--kind", "db", "--to-database",
                 f"{a['database']}_r"]) == 0
    titles = client(galera, 0).query(f"SELECT post_title FROM {a['database']}_r.wp_posts WHERE post_title LIKE 'body%' "
                                     "OR post_title IN ('archived', 'lost with the purged logs')")
    assert titles == [["archived"]]
    client(galera, 0).drop_database(f"{a['database']}_r")


def test_a_dump_under_write_load_takes_no_global_lock_and_never_stalls_the_writers(galera, make_farm,
                                                                                    dagster_home, tmp_path):
    """A bigger site dumped while another node takes a steady stream of writes: no FLUSH TABLES WITH
    READ LOCK in the general log; the writes never wait more than a second."""
    from wpfarm_assets.demo import DemoSize

    farm = make_farm(1, server=client(galera, 0), size=DemoSize(posts=3000, uploads=1),
                     sections={"database": {"galera_nodes": galera.nodes}})
    site = farm.sites[0]
    log = Path("/var/tmp") / f"wpfarm-general-{site['database']}.log"
    galera.sql(0, f"SET GLOBAL general_log_file = '{log}'; SET GLOBAL general_log = ON; FLUSH STATUS")
    stop, waits = threading.Event(), []

    def writer():
        writes = client(galera, 2)
        while not stop.is_set():
            started = time.monotonic()
            writes.query(post(site["database"], "load"))
            waits.append(time.monotonic() - started)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.5)
        assert main(["backup", site["name"]]) == 0
    finally:
        stop.set()
        thread.join(30)
        galera.sql(0, "SET GLOBAL general_log = OFF")
    general = log.read_text(errors="replace")
    log.unlink()
    assert "mariadb-dump" in general or "binlog_snapshot" in general  # the dump's session is in the log
    assert "WITH READ LOCK" not in general.upper()
    assert "CONSISTENT SNAPSHOT" in general.upper()
    assert len(waits) > 20 and max(waits) < 1.0, (len(waits), max(waits))
    paused = float(galera.status(0).get("wsrep_flow_control_paused", "0"))
    print(f"writes during the dump: {len(waits)}, slowest {max(waits) * 1000:.0f} ms, flow control paused {paused:.4f}")


def test_pitr_refusals_are_one_clear_line_and_restore_nothing(galera, galera_farm, capsys):
    farm = galera_farm
    a = farm.sites[0]
    scratch = f"{a['database']}_r"
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", "yesterday at five", "--kind", "db"]) == 2
    assert "is not a time: use ISO 8601" in capsys.readouterr().err
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", "2026-12-07T14:32:05Z", "--at", "20261207T143205Z"]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["backup", a["name"]]) == 0
    assert main(["binlogs"]) == 0
    capsys.readouterr()
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", future, "--kind", "db", "--to-database", scratch]) == 1
    assert "is in the future" in capsys.readouterr().err
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", "2020-01-01T00:00:00Z", "--kind", "db", "--to-database", scratch]) == 1
    assert "before its oldest database backup" in capsys.readouterr().err
    galera.sql(1, post(a["database"], "not archived yet"))
    time.sleep(1.1)
    beyond = datetime.now(timezone.utc).isoformat()
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", beyond, "--kind", "db", "--to-database", scratch]) == 1
    assert "the binary-log archive reaches" in capsys.readouterr().err
    assert not client(galera, 0).database_exists(scratch)


def test_a_node_without_the_replication_privilege_or_without_binary_logs_is_one_clear_line(
        galera, make_farm, dagster_home, monkeypatch, capsys):
    farm = make_farm(1, server=client(galera, 0), sections={"database": {"galera_nodes": galera.nodes,
                                                                         "user": "wpfarm_norepl"}})
    galera.sql(0, "CREATE USER IF NOT EXISTS 'wpfarm_norepl'@'127.0.0.1' IDENTIFIED BY 'norepl-pw'; "
                  "GRANT SELECT, RELOAD, BINLOG MONITOR ON *.* TO 'wpfarm_norepl'@'127.0.0.1'")
    monkeypatch.setenv("WPFARM_DB_PASSWORD", "norepl-pw")
    assert main(["binlogs"]) == 1
    err = capsys.readouterr().err
    assert "REPLICATION SLAVE" in err and "norepl-pw" not in err
    assert not list((farm.workdir / "backups").rglob("binlogs/*.json"))  # nothing half-archived

    monkeypatch.delenv("WPFARM_DB_PASSWORD")
    standalone = make_farm(1, sections={"database": {"pitr": True}})  # the machine's server: log_bin off
    assert main(["backup"]) == 0
    capsys.readouterr()
    assert main(["binlogs"]) == 1
    assert "binary logging is off on 127.0.0.1:3306" in capsys.readouterr().err
    site = standalone.sites[0]
    assert main(["restore", "--gnupg-home", standalone.keyring.home, site["name"], "--time",
                 datetime.now(timezone.utc).isoformat(), "--kind", "db", "--to-database", f"{site['database']}_r"]) == 1
    assert "no binary logs are archived" in capsys.readouterr().err


def test_statements_a_replay_would_drop_or_run_against_another_database_stop_the_restore(galera, galera_farm, capsys):
    farm, db = galera_farm, client(galera, 0)
    a, b = farm.sites[0], farm.sites[1]
    assert main(["backup"]) == 0
    # Run in site a's database but emptying a table of site b: kept by `--database`, and it would run as written.
    galera.sql(1, f"USE {a['database']}; TRUNCATE TABLE {b['database']}.wp_links; " + post(a["database"], "x"))
    t = a_second_later()
    assert main(["binlogs"]) == 0
    capsys.readouterr()
    b_before = db.checksums(b["database"])
    galera.sql(1, post(b["database"], "b goes on"))
    b_now = db.checksums(b["database"])
    for target in ([], ["--to-database", f"{a['database']}_r"]):
        assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", t.isoformat(), "--kind", "db",
                     "--force", *target]) == 1
        err = capsys.readouterr().err
        assert f"names {b['database']}, which its replay would change" in err and "nothing restored" in err, err
    assert db.checksums(b["database"]) == b_now != b_before
    assert not db.database_exists(f"{a['database']}_r")

    # Run in site b's database but creating a table of site a: `--database` would leave it out.
    assert main(["backup", a["name"]]) == 0  # a dump after the TRUNCATE: it is not replayed any more
    galera.sql(1, post(a["database"], "after the dump"))
    galera.sql(1, f"USE {b['database']}; CREATE TABLE {a['database']}.wp_extra (i int)")
    t = a_second_later()
    assert main(["binlogs"]) == 0
    capsys.readouterr()
    scratch = f"{a['database']}_r"
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", t.isoformat(), "--kind", "db",
                 "--to-database", scratch]) == 1
    assert "would be left out" in capsys.readouterr().err and not db.database_exists(scratch)
    assert main(["restore", "--gnupg-home", farm.keyring.home, a["name"], "--time", t.isoformat(), "--kind", "db",
                 "--to-database", scratch, "--force"]) == 0
    assert db.query(f"SELECT COUNT(*) FROM {scratch}.wp_posts WHERE post_title = 'after the dump'") == [["1"]]
    db.drop_database(scratch)
