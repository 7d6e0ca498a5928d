"""A `wpfarm restore` SIGKILLed in the middle: none of its children outlive it (setpriv
--pdeathsig); a database restore loads into a scratch database and swaps it in with one RENAME
TABLE, so the live site is as it was, and the interruption is recorded (CRITICAL in status, backups
of it refused) until a restore completes, which drops the scratch; a files restore killed while it
staged leaves the live files as they were and its staging folder to the next restore, which removes it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main
from wpfarm_assets.demo import DemoSize

WPFARM = str(Path(sys.executable).parent / "wpfarm")


def child_running(parent: int, needle: str, timeout: float = 120) -> int:
    """The pid of a child of `parent` whose command line holds `needle`, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            if ppid == parent and needle in cmdline and not cmdline.startswith("setpriv"):
                return int(pid)
        time.sleep(0.005)
    raise AssertionError(f"no child of {parent} running {needle!r} within {timeout}s")


def gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie: dead, waiting for init to reap it
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def killed_during(site: str, kind: str, needle: str, gnupg_home: str) -> int:
    """Start `wpfarm restore SITE --kind KIND`, SIGKILL it once a child running `needle` has run a moment;
    that child's pid."""
    proc = subprocess.Popen([WPFARM, "restore", site, "--kind", kind, "--gnupg-home", gnupg_home],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = child_running(proc.pid, needle)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return child


def test_a_restore_killed_mid_import_is_shown_refuses_backups_and_the_next_restore_completes(
        make_farm, dagster_home, db, keyring, capsys):
    farm = make_farm(1, size=DemoSize(posts=20000, post_words=40, uploads=2))
    name, database = farm.sites[0]["name"], farm.sites[0]["database"]
    assert main(["backup"]) == 0
    backed_up = db.checksums(database)
    db.query(f"DELETE FROM {database}.wp_comments")  # what the restore is for
    live = db.checksums(database)

    loader = killed_during(name, "db", "--binary-mode", keyring.home)
    assert gone(loader), "the mariadb import outlived the killed restore"
    assert db.checksums(database) == live  # it loaded into a scratch database: the site is as it was
    scratch = [n for (n,) in db.query("SHOW DATABASES LIKE 'wpfarm\\_restore\\_%'")]
    assert scratch, "the test meant to kill the restore while it loaded"
    capsys.readouterr()
    assert main(["status"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(name) and " db " in line)
    assert "CRITICAL" in row and "did not complete" in row and "half-restored" in row, row
    assert main(["backup"]) == 1  # it would record the damage as a good restore point
    assert "database backup failed: refused: a restore into the live site" in capsys.readouterr().err

    assert main(["restore", name, "--kind", "db", "--gnupg-home", keyring.home]) == 0
    assert db.checksums(database) == backed_up
    assert not set(scratch) & {n for (n,) in db.query("SHOW DATABASES")}  # the killed one's scratch: dropped
    assert main(["status"]) == 0 and main(["backup"]) == 0


def test_a_files_restore_killed_while_staging_leaves_the_site_as_it_was_and_no_process_behind(
        make_farm, dagster_home, keyring, capsys):
    farm = make_farm(1, size=DemoSize(posts=5, uploads=40, upload_bytes=1 << 20))
    name, root = farm.sites[0]["name"], farm.site_root(0)
    assert main(["backup"]) == 0
    before = tree_digest(root)

    restic = killed_during(name, "files", "--target", keyring.home)  # `restic restore … --target STAGING`
    assert gone(restic), "restic outlived the killed restore"
    assert tree_digest(root) == before  # the copy over the live files had not begun: untouched
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".wpfarm-restore-")]
    assert leftovers, "the test meant to kill the restore while it staged"
    assert main(["status"]) == 0  # nothing of the live site was overwritten

    assert main(["restore", name, "--kind", "files", "--gnupg-home", keyring.home]) == 0
    assert not [p for p in root.iterdir() if p.name.startswith(".wpfarm-restore-")]  # removed by the next restore
    assert tree_digest(root) == before


def test_every_child_wpfarm_starts_dies_with_it():
    """A child that reads and writes no pipe (cp copying a big tree; a sleep here) notices nothing when
    wpfarm dies: without the kernel's help (setpriv --pdeathsig) it runs on to the end."""
    script = ("import sys, time; from resources.ssh import LocalRunner; from wpfarm_assets.backups.pipeline import _Stage; "
              "LocalRunner().start(['sleep', '60']); _Stage(['sleep', '61'], None); print('started', flush=True); "
              "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout.readline().strip() == "started"
    sleeps = [child_running(proc.pid, "sleep 60"), child_running(proc.pid, "sleep 61")]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all(gone(pid, timeout=2) for pid in sleeps)
