"""Backup age and integrity alerts through the real Alertmanager and Pushgateway, end to end."""

import json
import os
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import yaml
from services import wait_for

from resources.alerts import AlertmanagerResource
from resources.gpg import encrypt_argv
from resources.object_store import open_store
from wpfarm_assets.backups.backup import archive_files, back_up_database
from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import site_record_key
from wpfarm_assets.definitions import build_definitions

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
UTC = timezone.utc


def back_up(config, keyring, db, site, hours_ago: float) -> None:
    when = datetime.now(UTC) - timedelta(hours=hours_ago)
    store = open_store(config.backup.target)
    enc = encrypt_argv(keyring.fingerprint, keyring.public_home)
    back_up_database(site, db, store, enc, keyring.fingerprint, now=when)
    archive_files(site, db.runner, store, enc, keyring.fingerprint, now=when)


def check_health(config) -> dict[str, dg.AssetCheckEvaluation]:
    """Both health jobs, as their schedules run them: ages (with the inventory), then integrity."""
    evaluations = {}
    for job in ("check_backup_health", "verify_backups"):
        result = build_definitions(config).resolve_job_def(job).execute_in_process(
            instance=dg.DagsterInstance.get(), raise_on_error=False)
        evaluations.update({e.check_name: e for e in result.get_asset_check_evaluations()})
    assert set(evaluations) == {"backup_age_check", "backup_integrity_check", "restore_drill_check", "backup_age",
                                "farm_key_check"}
    return evaluations


def test_stale_sites_alert_by_severity_and_resolve_once_backed_up(
        make_farm, dagster_home, db, keyring, alertmanager, receivers):
    make_farm(2, alerts={"warning_after_hours": 1, "critical_after_hours": 2, "alertmanager_url": alertmanager})
    config = load_config()
    critical, warning = config.sites
    back_up(config, keyring, db, critical, hours_ago=3)
    back_up(config, keyring, db, warning, hours_ago=1.5)
    receivers.clear()

    checks = check_health(config)
    age = checks["backup_age_check"]
    assert not age.passed and age.severity == dg.AssetCheckSeverity.ERROR
    assert checks["backup_integrity_check"].passed
    AlertmanagerResource(url=alertmanager).fire(
        {"alertname": "WpfarmSiteAdded", "site": "info.example.com", "severity": "info"}, {"summary": "new site"})

    def delivered():
        got = receivers.text()
        return (critical.name in got["sms"] and critical.name in got["email"] and warning.name in got["email"]
                and all(name in got["slack"] for name in (critical.name, warning.name, "info.example.com")))

    wait_for(delivered, "critical -> slack+email+sms, warning -> slack+email, info -> slack")
    got = receivers.text()
    assert warning.name not in got["sms"] and "info.example.com" not in got["sms"]
    assert "info.example.com" not in got["email"]
    firing = AlertmanagerResource(url=alertmanager).firing("WpfarmBackupStale")
    assert {(a["site"], a["kind"], a["severity"]) for a in firing} == {
        (critical.name, "db", "critical"), (critical.name, "files", "critical"),
        (warning.name, "db", "warning"), (warning.name, "files", "warning")}

    back_up(config, keyring, db, critical, hours_ago=0)
    back_up(config, keyring, db, warning, hours_ago=0)
    receivers.clear()
    assert check_health(config)["backup_age_check"].passed
    assert AlertmanagerResource(url=alertmanager).firing("WpfarmBackupStale") == []
    wait_for(lambda: "RESOLVED" in receivers.text()["slack"] and critical.name in receivers.text()["sms"],
             "resolved notifications")


def test_a_corrupted_backup_is_caught_by_the_integrity_check_and_alerts(
        make_farm, dagster_home, db, keyring, alertmanager, receivers):
    make_farm(1, alerts={"alertmanager_url": alertmanager})
    config = load_config()
    site = config.sites[0]
    back_up(config, keyring, db, site, hours_ago=0)
    store = open_store(config.backup.target)
    newest = list_backups(store, site.name, "files")[-1]
    path = Path(config.backup.target[len("file://"):]) / newest.data_key
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    receivers.clear()

    integrity = check_health(config)["backup_integrity_check"]
    assert not integrity.passed and "corrupted" in integrity.description
    firing = AlertmanagerResource(url=alertmanager).firing("WpfarmBackupIntegrity")
    assert [(a["site"], a["kind"], a["severity"]) for a in firing] == [(site.name, "files", "critical")]
    wait_for(lambda: site.name in receivers.text()["sms"], "the integrity alert by SMS")


def test_truncated_object_is_caught_too(make_farm, dagster_home, db, keyring):
    make_farm(1)
    config = load_config()
    site = config.sites[0]
    back_up(config, keyring, db, site, hours_ago=0)
    newest = list_backups(open_store(config.backup.target), site.name, "db")[-1]
    path = Path(config.backup.target[len("file://"):]) / newest.data_key
    path.write_bytes(path.read_bytes()[:-1000])
    integrity = check_health(config)["backup_integrity_check"]
    assert not integrity.passed and "manifest says" in integrity.description


def test_every_backup_pushes_its_metrics(make_farm, dagster_home, pushgateway):
    farm = make_farm(1, alerts={"pushgateway_url": pushgateway})
    site = farm.sites[0]["name"]
    assert main(["backup"]) == 0
    metrics = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10).read().decode()
    for kind in ("db", "files"):
        line = next(line for line in metrics.splitlines()
                    if line.startswith("wpfarm_backup_last_success_timestamp_seconds{") and f'site="{site}"' in line
                    and f'kind="{kind}"' in line)
        assert abs(float(line.split()[-1]) - time.time()) < 120
    assert f'wpfarm_backup_stored_bytes{{job="wpfarm_backup",kind="db",site="{site}"}}' in metrics or \
        f'wpfarm_backup_stored_bytes{{instance="",job="wpfarm_backup",kind="db",site="{site}"}}' in metrics


def test_a_failed_run_alerts(make_farm, dagster_home, db, alertmanager):
    from sensors.run_failures import run_failure_alert
    from wpfarm_assets.partitions import partition_range_tags

    farm = make_farm(1, alerts={"alertmanager_url": alertmanager})
    db.drop_database(farm.sites[0]["database"])
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", [farm.sites[0]["name"]])
    name = farm.sites[0]["name"]
    result = build_definitions(load_config()).resolve_job_def("back_up_sites").execute_in_process(
        instance=instance, tags=partition_range_tags(name, name), raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert", dagster_event=failure, dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alertmanager": AlertmanagerResource(url=alertmanager), "farm": load_config()},
    ).for_run_failure()
    run_failure_alert(context)
    firing = AlertmanagerResource(url=alertmanager).firing("WpfarmRunFailed")
    assert any(a["job"] == "back_up_sites" and a["severity"] == "warning" for a in firing)


def test_status_shows_a_site_never_backed_up_as_new_then_critical_a_day_on(make_farm, dagster_home, capsys):
    farm = make_farm(2)
    backed_up, new = farm.sites[0]["name"], farm.sites[1]["name"]
    assert main(["backup", backed_up]) == 0  # the new site is recorded as added now, not backed up
    capsys.readouterr()
    assert main(["status"]) == 0  # nothing needs an operator yet
    out = capsys.readouterr().out
    lines = {tuple(line.split()[:2]): line for line in out.splitlines() if line.startswith(("s0-", "s1-"))}
    for kind in ("db", "files"):
        assert lines[backed_up, kind].split()[5] == "OK", lines[backed_up, kind]
        assert "newest backup 0.0 h old" in lines[backed_up, kind], lines[backed_up, kind]
        assert lines[new, kind].split()[4] == "NEW" and "no backup yet" in lines[new, kind], lines[new, kind]
    assert lines[new, "drill"].split()[4] == "NEW" and lines[backed_up, "drill"].split()[4] == "NEW"
    key = next(line for line in out.splitlines() if line.startswith("farm ") and " key " in line)
    assert "OK" in key and "does not expire" in key, key  # the farm key: one more row, ok
    assert "3 ok, 4 new (nothing to check yet), 0 warning, 0 critical" in out

    # A site added to farm.yaml by hand, no command run since: it joins now, NEW as well.
    raw = yaml.safe_load(farm.config_path.read_text())
    raw["sites"].append({"name": "added.test.example", "database": "wpt_added_by_hand",
                         "content_path": str(farm.workdir / "added" / "wp-content")})
    farm.config_path.write_text(yaml.safe_dump(raw))
    assert main(["status"]) == 0
    added = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("added.test.example")]
    assert [row[4] for row in added] == ["NEW", "NEW", "NEW"], added

    # Thirty hours on, the site still never backed up is critical; the fresh one still OK.
    record = Path(load_config().backup.target[len("file://"):]) / site_record_key(new)
    old = time.time() - 30 * 3600
    os.utime(record, (old, old))  # the site joined 30 hours ago
    assert main(["status"]) == 1
    lines = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines() if line.startswith(("s0-", "s1-"))}
    for kind in ("db", "files"):
        assert "OK" in lines[backed_up, kind] and "newest backup 0.0 h old" in lines[backed_up, kind]
        assert "CRITICAL" in lines[new, kind] and "never backed up" in lines[new, kind]


def test_alertmanager_config_and_prometheus_rules_pass_their_own_tools():
    assert subprocess.run(["amtool", "check-config", str(CONFIGS / "alertmanager/alertmanager.yml")],
                          capture_output=True).returncode == 0
    assert subprocess.run(["promtool", "check", "rules", str(CONFIGS / "prometheus/wpfarm-rules.yml")],
                          capture_output=True).returncode == 0
    tested = subprocess.run(["promtool", "test", "rules", "wpfarm-rules.test.yml"], cwd=CONFIGS / "prometheus",
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    json.loads((CONFIGS / "grafana/backup-health.json").read_text())
