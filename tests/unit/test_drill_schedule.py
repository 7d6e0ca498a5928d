"""The nightly drill sample over simulated nights (a controlled clock): every site comes round within
`every_days`, no night takes more than its share, and a site left out goes overdue and warns.
The schedule itself is evaluated by Dagster against drill records in a real (local) store."""

import json
import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import dagster as dg

from resources.object_store import LocalStore, ObjectStoreResource
from schedules.restore_drill import build_restore_drill_schedule
from wpfarm_assets.backups.drill import drill_findings, nightly_sample
from wpfarm_assets.core.config import parse_config
from wpfarm_assets.core.keys import drill_key
from wpfarm_assets.partitions import RANGE_END, RANGE_START

SITES = [f"site{i:02d}.example.com" for i in range(20)]
START = datetime(2026, 3, 1, 4, 0, tzinfo=timezone.utc)


def test_fourteen_nights_drill_every_site_twice_within_each_nights_share():
    last: dict[str, datetime] = {}
    drilled: Counter = Counter()
    share = math.ceil(len(SITES) / 7)
    for night in range(14):
        now = START + timedelta(days=night)
        tonight = nightly_sample(SITES, last, every_days=7, extra=1, seed=now.date().isoformat())
        assert len(tonight) <= share + 1, (night, tonight)
        assert len(set(tonight)) == len(tonight)
        for site in tonight:
            last[site] = now
            drilled[site] += 1
        if night >= 6:  # from the end of the first cycle on, no site's last drill is older than every_days
            assert all(now - last[s] < timedelta(days=7) for s in SITES), night
        findings = drill_findings(SITES, {s: {"started_at": t.isoformat(), "passed": True, "rto_seconds": 5}
                                          for s, t in last.items()},
                                  {s: START for s in SITES}, now, every_days=7, rto_warning_minutes=15)
        assert all(f.severity in ("ok", "new") for f in findings), [f for f in findings if f.severity not in ("ok", "new")]
    assert min(drilled[s] for s in SITES) >= 2, drilled
    assert sum(drilled.values()) == 14 * (share + 1)  # the due three and one extra, every night


def test_a_site_left_out_goes_overdue_and_warns_and_failures_are_critical():
    records = {s: {"started_at": START.isoformat(), "passed": True, "rto_seconds": 5} for s in SITES}
    later = START + timedelta(days=15)
    findings = {f.site: f for f in drill_findings(SITES, records, {}, later, every_days=7, rto_warning_minutes=15)}
    assert findings[SITES[0]].severity == "warning" and "overdue" in findings[SITES[0]].reason
    records[SITES[1]] = {"started_at": later.isoformat(), "passed": False, "rto_seconds": 3,
                         "problems": ["db 20260315T020000Z: table wp_posts has 3 rows, its manifest says 4"]}
    records[SITES[2]] = {"started_at": later.isoformat(), "passed": True, "rto_seconds": 1200}
    findings = {f.site: f for f in drill_findings(SITES, records, {SITES[3]: later}, later, 7, 15)}
    assert findings[SITES[1]].severity == "critical" and "wp_posts has 3 rows" in findings[SITES[1]].reason
    assert findings[SITES[2]].severity == "warning" and "RTO 1200 s, over 15 min" in findings[SITES[2]].reason
    del records[SITES[3]]
    findings = {f.site: f for f in drill_findings(SITES, records, {SITES[3]: later}, later, 7, 15)}
    assert findings[SITES[3]].severity == "new" and "not drilled yet" in findings[SITES[3]].reason
    findings = {f.site: f for f in drill_findings(SITES, records, {}, later, 7, 15)}
    assert findings[SITES[3]].severity == "warning" and "never drilled" in findings[SITES[3]].reason


def test_the_window_caps_a_night_and_the_oldest_go_first():
    last = {s: START + timedelta(minutes=i) for i, s in enumerate(SITES)}
    assert nightly_sample(SITES, last, every_days=2, extra=5, seed="x", capacity=4) == sorted(SITES[:4])


def test_the_schedule_runs_tonights_sites_from_the_drill_records(tmp_path):
    store = LocalStore(tmp_path / "store")
    config = parse_config({"backup": {"target": f"file://{tmp_path / 'store'}", "gpg_recipient": "A" * 40},
                           "drill": {"every_days": 7, "extra_sites": 0},
                           "sites": [{"name": s, "database": f"wp_{i}", "content_path": f"/srv/sites/{s}/wp-content"}
                                     for i, s in enumerate(SITES)]}, "farm.yaml")
    # Drilled a week ago, in order; the three drilled longest ago are tonight's.
    for i, site in enumerate(SITES):
        when = START - timedelta(days=7) + timedelta(minutes=i)
        store.put_bytes(drill_key(site, when), json.dumps({"site": site, "started_at": when.isoformat(),
                                                           "passed": True, "rto_seconds": 30}).encode())
    schedule = build_restore_drill_schedule(config.drill.schedule)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("sites", SITES)
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=START, resources={
            "farm": config, "object_store": ObjectStoreResource(target=config.backup.target)})
        requests = schedule.evaluate_tick(context).run_requests
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [(SITES[0], SITES[2])]
    ends = requests[0].run_config["ops"]["restore_drill"]["config"]["window_ends"]
    assert datetime.fromisoformat(ends) == START + timedelta(minutes=config.drill.max_minutes)
