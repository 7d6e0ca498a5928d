"""A site removed from farm.yaml is retired, not forgotten: status lists it apart, its alerts resolve
saying "retired", its backups are listed and restored from the store alone (not in place), and
after retention.retired_days (on a controlled clock) they are gone, and nothing else is."""

import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from services import wait_for

from resources.alerts import AlertmanagerResource
from wpfarm_assets.backups.health import OK, WARNING, group_listing
from wpfarm_assets.backups.retired import expire_retired, retired_findings, retired_sites_of
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import instance, main, run_job, store_of
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import SITES
from wpfarm_assets.partitions import partition_range_tags


def test_a_removed_site_is_retired_restorable_from_the_store_then_deleted_after_retired_days(
        make_farm, dagster_home, db, keyring, alertmanager, receivers, pushgateway, tmp_path, capsys):
    # Thresholds so low that every backup is already "stale": both sites have alerts firing.
    farm = make_farm(2, alerts={"warning_after_hours": 0.0001, "critical_after_hours": 1000,
                                "alertmanager_url": alertmanager, "pushgateway_url": pushgateway})
    staying, leaving = (s["name"] for s in farm.sites)
    assert main(["backup"]) == 0
    firing = {a["site"] for a in AlertmanagerResource(url=alertmanager).firing("WpfarmBackupStale")}
    assert firing == {staying, leaving}

    raw = yaml.safe_load(farm.config_path.read_text())
    gone = raw["sites"].pop(1)
    farm.config_path.write_text(yaml.safe_dump(raw))
    config = load_config()
    receivers.clear()
    assert run_job("check_backup_health", config, instance()).success
    assert {a["site"] for a in AlertmanagerResource(url=alertmanager).firing("WpfarmBackupStale")} == {staying}
    # Its group (WpfarmBackupStale, warning) still fires for the other site: one notification lists both.
    wait_for(lambda: f"{leaving} db: retired: the site was removed" in receivers.text()["slack"],
             "the retired site's alerts resolved, saying why")

    metrics = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10).read().decode()
    assert f'site="{staying}"' in metrics and f'site="{leaving}"' not in metrics  # Prometheus's rule stops too

    # Its partition stays, in the ranges of the nightly runs, and is passed over in them.
    assert instance().get_dynamic_partitions("sites") == [staying, leaving]
    assert run_job("back_up_sites", config, instance(), tags=partition_range_tags(staying, leaving, 2)).success

    capsys.readouterr()
    main(["status"])
    shown = capsys.readouterr().out
    main_table, retired_part = shown.split("retired sites", 1)
    assert leaving not in main_table and staying in main_table
    row = next(line for line in retired_part.splitlines() if line.startswith(leaving))
    assert "OK" in row and "retired on" in row and "newest backups: db " in row and "kept until" in row, row

    assert main(["backups", leaving]) == 0
    listed = capsys.readouterr().out
    assert "is retired" in listed and listed.count("  ok  ") >= 2, listed  # its db and files restore points

    assert main(["restore", leaving, "--gnupg-home", keyring.home]) == 2  # no site there to restore in place
    assert "is retired" in capsys.readouterr().err
    scratch_db, scratch_dir = f"{gone['database']}_back", tmp_path / "back"
    try:
        assert main(["restore", leaving, "--to-database", scratch_db, "--to-path", str(scratch_dir),
                     "--gnupg-home", keyring.home]) == 0
        assert db.checksums(scratch_db) == db.checksums(gone["database"])
        assert tree_digest(scratch_dir) == tree_digest(Path(gone["content_path"]).parent)
    finally:
        db.drop_database(scratch_db)

    # The controlled clock: a week before retention.retired_days a warning; after them, deleted.
    store = store_of(config)
    staying_before = sorted((o.key, o.size) for o in store.list(f"{SITES}{staying}/"))
    (retired,) = retired_sites_of(config, group_listing(list(store.list(SITES))), datetime.now(timezone.utc))
    assert retired.deleted_on - retired.retired_at == timedelta(days=90)
    (early,) = retired_findings([retired], retired.retired_at + timedelta(days=80))
    (late,) = retired_findings([retired], retired.retired_at + timedelta(days=84))
    assert early.severity == OK and late.severity == WARNING and "in 6.0 days" in late.reason
    assert expire_retired(store, [retired], retired.retired_at + timedelta(days=89)) == []
    assert expire_retired(store, [retired], retired.deleted_on) == [leaving]
    assert list(store.list(f"{SITES}{leaving}/")) == []
    assert sorted((o.key, o.size) for o in store.list(f"{SITES}{staying}/")) == staying_before  # nothing else
    assert db.database_exists(gone["database"])  # wpfarm deletes backups, never the site itself
