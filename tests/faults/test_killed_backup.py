"""A killed backup never blocks the ones after it; a hung database server fails a dump by its
stall deadline instead of holding the `database` pool slot; a step waiting for a slot sleeps and
stops on SIGTERM. Each test drives the real `wpfarm` command against a MariaDB server of its own
that it can SIGSTOP (conftest's scratch_server).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml
from services import wait_for_child

from resources.object_store import open_store
from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.core.config import load_config

WPFARM = str(Path(sys.executable).parent / "wpfarm")
STALL = 6  # backup.stall_timeout of these farms, seconds


def start_backup(*sites: str) -> subprocess.Popen:
    return subprocess.Popen([WPFARM, "backup", *sites], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_stall_timeout(farm, seconds: float) -> None:
    config = yaml.safe_load(farm.config_path.read_text())
    config["backup"]["stall_timeout"] = seconds
    farm.config_path.write_text(yaml.safe_dump(config))


def pool_holders(pool: str) -> set[str]:
    info = dg.DagsterInstance.get().event_log_storage.get_concurrency_info(pool)
    return {slot.run_id for slot in info.claimed_slots}


def waiting_runs(pool: str) -> set[str]:
    info = dg.DagsterInstance.get().event_log_storage.get_concurrency_info(pool)
    return {step.run_id for step in info.pending_steps}


def test_a_backup_killed_mid_dump_does_not_block_the_next(scratch_server, make_farm, dagster_home):
    server, server_pid = scratch_server
    farm = make_farm(2, server=server)
    with_stall_timeout(farm, 600)  # the kill, not the stall deadline, must be what ends the first run
    first = start_backup()
    dump = wait_for_child(first.pid, "mariadb-dump")
    os.kill(server_pid, signal.SIGSTOP)  # hold the dump where it is: the process dies mid-dump
    try:
        time.sleep(0.5)
        assert pool_holders("database"), "the killed backup should have been holding the database pool"
        first.kill()  # SIGKILL: no cleanup of any kind
        first.wait(timeout=10)
        os.kill(dump, signal.SIGKILL)
    finally:
        os.kill(server_pid, signal.SIGCONT)
    store = open_store(load_config().backup.target)
    assert any(list_backups(store, s["name"], "db") == [] for s in farm.sites)  # it did die mid-dump
    assert pool_holders("database")  # the dead run still claims the slot: what used to block for ever

    done = subprocess.run([WPFARM, "backup"], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "is gone" in done.stderr and "pool slots freed" in done.stderr
    assert all(len(list_backups(store, s["name"], "db")) == 1 for s in farm.sites)
    runs = dg.DagsterInstance.get().get_runs()
    killed = next(r for r in runs if r.status == dg.DagsterRunStatus.FAILURE)
    assert killed.run_id not in pool_holders("database")


def test_a_hung_database_server_fails_the_dump_by_the_stall_deadline(scratch_server, make_farm, dagster_home):
    server, server_pid = scratch_server
    farm = make_farm(2, server=server)
    with_stall_timeout(farm, STALL)
    backup = start_backup()
    wait_for_child(backup.pid, "mariadb-dump")
    os.kill(server_pid, signal.SIGSTOP)  # a server that accepts connections and never answers
    started = time.monotonic()
    try:
        out, err = backup.communicate(timeout=STALL + 60)
    finally:
        os.kill(server_pid, signal.SIGCONT)
    took = time.monotonic() - started

    assert backup.returncode == 1, out + err
    assert "no progress for 6 s (stall timeout)" in err
    assert took < STALL + 30, f"took {took:.1f}s against a stall timeout of {STALL}s"
    store = open_store(load_config().backup.target)
    assert all(len(list_backups(store, s["name"], "files")) == 1 for s in farm.sites)  # the files tier went on
    assert pool_holders("database") == set()

    done = subprocess.run([WPFARM, "backup"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(len(list_backups(store, s["name"], "db")) >= 1 for s in farm.sites)


def test_a_step_waiting_for_a_pool_slot_sleeps_and_stops_on_sigterm(scratch_server, make_farm, dagster_home):
    server, server_pid = scratch_server
    farm = make_farm(1, server=server)
    with_stall_timeout(farm, 600)
    holder = start_backup()
    wait_for_child(holder.pid, "mariadb-dump")
    os.kill(server_pid, signal.SIGSTOP)  # the first backup holds the database slot while it waits
    try:
        holding = pool_holders("database")
        waiter = start_backup()
        deadline = time.monotonic() + 60
        while not waiting_runs("database") - holding:  # the waiter's step is queued for the slot
            assert time.monotonic() < deadline and waiter.poll() is None, "the second backup never waited"
            time.sleep(0.2)
        time.sleep(1)
        before = cpu_seconds(waiter.pid)
        time.sleep(5)
        spent = cpu_seconds(waiter.pid) - before
        assert waiter.poll() is None, "the waiting backup should still be waiting"
        assert spent < 1.0, f"the waiting backup used {spent:.2f} s of CPU in 5 s (spinning)"

        waiter.send_signal(signal.SIGTERM)
        out, err = waiter.communicate(timeout=20)
        assert waiter.returncode == 130, out + err
        assert "interrupted" in err
    finally:
        holder.kill()
        holder.wait()
        os.kill(server_pid, signal.SIGCONT)
    waiting_run = dg.DagsterInstance.get().get_runs(limit=1)[0]
    assert waiting_run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def test_the_production_instance_monitors_runs_and_frees_slots_of_dead_ones():
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "dagster.production.yaml").read_text())
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert 0 < monitoring["free_slots_after_run_end_seconds"] <= 300
    assert 0 < monitoring["start_timeout_seconds"] <= 600
