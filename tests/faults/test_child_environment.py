"""Child processes get a minimal environment: none of wpfarm's secrets reach mariadb-dump, tar or gpg, and
restic gets its password on stdin and only the S3 keys it needs in its environment.

Read from /proc/<pid>/environ of the real processes while a real backup runs (the database server
is held with SIGSTOP so that the dump, and the gpg it feeds, are alive long enough to look at).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from resources.mariadb import MariaDB
from resources.ssh import LocalRunner

WPFARM = str(Path(sys.executable).parent / "wpfarm")
SECRETS = {
    "WPFARM_DB_PASSWORD": "db-secret-7d1e",
    "SPACES_SECRET_ACCESS_KEY": "spaces-secret-9a2f",
    "SPACES_ACCESS_KEY_ID": "spaces-id-3c4b",
    "DIGITALOCEAN_TOKEN": "do-token-5e6f",
    "REDIS_PASSWORD": "redis-secret-0a1b",
}


def children(parent: int) -> list[tuple[int, str]]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(tail.split()[1]) == parent:
            found.append((int(pid), head.split("(", 1)[1]))
    return found


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def test_mariadb_dump_gpg_and_tar_see_none_of_the_secrets(scratch_server, make_farm, dagster_home):
    server, server_pid = scratch_server
    make_farm(1, server=server)
    server.query(f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{SECRETS['WPFARM_DB_PASSWORD']}'")
    with_password = MariaDB(LocalRunner(), server.host, server.port, "root", SECRETS["WPFARM_DB_PASSWORD"])
    backup = subprocess.Popen([WPFARM, "backup"], env={**os.environ, **SECRETS},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, dict] = {}
    stopped, stopped_at = False, 0.0
    try:
        deadline = time.monotonic() + 90
        while len(seen) < 3 and backup.poll() is None and time.monotonic() < deadline:
            if stopped and "gpg" in seen and time.monotonic() > stopped_at + 3:
                break  # tar finished before it could be looked at (small sites): the others tell
            for pid, name in children(backup.pid):
                if name in ("mariadb-dump", "gpg", "tar") and name not in seen:
                    try:
                        seen[name] = environ(pid)
                    except (FileNotFoundError, ProcessLookupError):
                        continue
                    if name == "mariadb-dump" and not stopped:
                        os.kill(server_pid, signal.SIGSTOP)  # hold the dump, and the gpg it feeds
                        stopped, stopped_at = True, time.monotonic()
            time.sleep(0.005)
    finally:
        os.kill(server_pid, signal.SIGCONT)
        out, err = backup.communicate(timeout=120)
        with_password.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY '';\n")
    assert backup.returncode == 0, out + err  # the password did reach the client, out of band
    assert {"mariadb-dump", "gpg"} <= set(seen), sorted(seen)
    for name, child in seen.items():
        leaked = sorted(k for k, v in child.items() if k in SECRETS or v in SECRETS.values())
        assert leaked == [], f"{name} sees {leaked}"
        assert "PATH" in child, name


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0")]


def test_restic_gets_the_s3_keys_it_needs_and_no_password_in_its_environment_or_arguments(make_farm, dagster_home, s3):
    from resources.restic import site_password

    farm = make_farm(1, target=f"s3://{s3.new_bucket()}/farm", s3_endpoint_url=s3.endpoint)
    restic_password = "restic-farm-secret-4d5e"
    others = {k: v for k, v in SECRETS.items() if k != "WPFARM_DB_PASSWORD"}  # the farm's MariaDB has none
    env = {**os.environ, **others, "WPFARM_RESTIC_PASSWORD": restic_password}
    forbidden = {restic_password, site_password(restic_password, farm.sites[0]["name"]),
                 SECRETS["DIGITALOCEAN_TOKEN"], SECRETS["REDIS_PASSWORD"]}
    backup = subprocess.Popen([WPFARM, "backup"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, tuple[list[str], dict]] = {}
    while backup.poll() is None:
        for pid, name in children(backup.pid):
            if name == "restic" and pid not in seen:
                try:
                    seen[pid] = (cmdline(pid), environ(pid))
                except (FileNotFoundError, ProcessLookupError):
                    continue
        time.sleep(0.005)
    out, err = backup.communicate()
    assert backup.returncode == 0, out + err
    assert seen, "no restic process was seen"
    repository_calls = [(argv, child) for argv, child in seen.values() if "-r" in argv]  # not `restic version`
    assert repository_calls
    for argv, child in repository_calls:
        assert not [a for a in argv if any(secret in a for secret in forbidden | {SECRETS["SPACES_SECRET_ACCESS_KEY"]})]
        assert not [k for k, v in child.items() if v in forbidden or k in ("RESTIC_PASSWORD", "WPFARM_RESTIC_PASSWORD")]
        assert "--password-file" in argv and argv[argv.index("--password-file") + 1] == "/dev/stdin"
    s3_calls = [child for argv, child in repository_calls if "init" in argv or "backup" in argv]
    assert s3_calls and all(child.get("AWS_SECRET_ACCESS_KEY") == SECRETS["SPACES_SECRET_ACCESS_KEY"] for child in s3_calls)
