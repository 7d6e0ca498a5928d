"""What the off-site copy adds to a night, on the daily_change farm, in one run.

    .venv/bin/python -m benchmarks.offsite --sites 6 --days 4

The farm and its days are daily_change's (per site 15-23 MB of SQL, 70-95 MB of wp-content; each
day a few posts, comments and uploads). Each night is `wpfarm backup` with backup.offsite set, into a
local primary target and a moto_server bucket with object lock: back_up_sites, apply_retention,
copy_offsite, check_backup_health, in one process, as the nightly schedule and its sensors run them.
  copy   the copy_offsite run's own duration (from its run record);
  night  the rest of the command's wall time (what the night costs without a copy);
  added  the bytes of the objects the night wrote to the primary (new keys; retention's deletions
         not subtracted: all nights fall on one UTC day here, so the daily tier keeps one);
  sent   the bytes of the versions the copy's bucket gained.
Targets: copy <= 20% of the night; sent <= 1.05x added.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import boto3
import yaml

from benchmarks.daily_change import MB, build, change, measured
from benchmarks.retention import start_moto
from resources.mariadb import MariaDB
from resources.ssh import LocalRunner
from wpfarm_assets.demo import make_gpg_key

VENV = Path(sys.executable).parent


def bucket_bytes(client, bucket: str) -> int:
    """Every version's bytes: what the bucket was sent, deletions not subtracted."""
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sum(v["Size"] for page in pages for v in page.get("Versions", []))


def files(path: Path) -> dict[str, int]:
    return {str(f): f.stat().st_size for f in path.rglob("*") if f.is_file()} if path.exists() else {}


def copy_seconds(dagster_home: Path) -> float:
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        (record,) = instance.get_run_records(dg.RunsFilter(job_name="copy_offsite"), limit=1)
        return record.end_time - record.start_time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sites", type=int, default=6)
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--workdir", default="/var/tmp/wpfarm-bench-offsite")
    args = p.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    moto, endpoint = start_moto()
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="copy",
                              aws_secret_access_key="copy")
        client.create_bucket(Bucket="wpfarm-copy", ObjectLockEnabledForBucket=True)
        db = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
        fingerprint = make_gpg_key(workdir / "gnupg")
        print(f"building {args.sites} sites in {workdir} ...", flush=True)
        sites = build(workdir, db, args.sites)
        primary = workdir / "primary"
        backup = {"target": f"file://{primary}", "gpg_recipient": fingerprint, "gpg_home": str(workdir / "gnupg"),
                  "offsite": {"target": "s3://wpfarm-copy/farm", "s3_endpoint_url": endpoint, "lock_days": 30}}
        (workdir / "farm.yaml").write_text(yaml.safe_dump({
            "database": {"host": "127.0.0.1", "port": 3306, "user": "root"}, "sites": sites, "backup": backup}))
        (workdir / "dagster").mkdir()
        shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", workdir / "dagster" / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(workdir / "dagster"), "WPFARM_RESTIC_PASSWORD": "bench",
               "WPFARM_CONFIG": str(workdir / "farm.yaml"), "OFFSITE_ACCESS_KEY_ID": "copy",
               "OFFSITE_SECRET_ACCESS_KEY": "copy"}
        rows = []
        print("| day | night s | copy s | copy/night | added MB | sent MB | sent/added |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for day in range(args.days):
            if day:
                change(db, sites, day)
            before, copy_before = files(primary), bucket_bytes(client, "wpfarm-copy")
            total = measured([str(VENV / "wpfarm"), "backup"], env)["wall"]
            copy = copy_seconds(workdir / "dagster")
            after = files(primary)
            added = sum(size for path, size in after.items() if before.get(path) != size)
            sent = bucket_bytes(client, "wpfarm-copy") - copy_before
            night = total - copy
            rows.append((night, copy, added, sent))
            print(f"| {day} | {night:.1f} | {copy:.1f} | {copy / night:.0%} | {added / MB:,.1f} | {sent / MB:,.1f} | "
                  f"{sent / added:.3f} |", flush=True)
        later = rows[1:] or rows
        shares = sorted(c / n for n, c, _, _ in later)
        ratios = sorted(s / a for _, _, a, s in later)
        print(f"\nnights after the first: the copy adds median {shares[len(shares) // 2]:.0%} of the night's wall time "
              f"(min {shares[0]:.0%}, max {shares[-1]:.0%}); bytes sent / bytes the night wrote: median "
              f"{ratios[len(ratios) // 2]:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f})")
    finally:
        moto.terminate()
        moto.wait(timeout=30)


if __name__ == "__main__":
    main()
