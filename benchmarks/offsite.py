"""What the off-site copy adds to a night, on the daily_change farm, in one run.

    .venv/bin/python -m benchmarks.offsite --sites 6 --days 4

The farm and its days are daily_change's (per site 15-23 MB of SQL, 70-95 MB of wp-content; each
day a few posts, comments and uploads). Each night:
  night  `wpfarm backup` without an off-site copy (dumps, snapshots, retention, checks), into a
         local primary target;
  copy   `wpfarm offsite copy`: the copy_offsite job (every site's new objects to a moto_server
         bucket with object lock, then restic check of 1/30 of each copied repository) and the
         checks, as `wpfarm backup` runs it after retention when backup.offsite is set.
Targets: copy wall time <= 20% of the night's; bytes sent to the copy <= 1.05x what the night added
to the primary (the copy's bucket grows by exactly the objects written, as moto reports them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import boto3
import yaml

from benchmarks.daily_change import MB, build, change, measured, stored
from benchmarks.retention import start_moto
from resources.mariadb import MariaDB
from resources.ssh import LocalRunner
from wpfarm_assets.demo import make_gpg_key

VENV = Path(sys.executable).parent


def bucket_bytes(client, bucket: str) -> int:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sum(v["Size"] for page in pages for v in page.get("Versions", []))


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
        backup = {"target": f"file://{primary}", "gpg_recipient": fingerprint, "gpg_home": str(workdir / "gnupg")}
        farm = {"database": {"host": "127.0.0.1", "port": 3306, "user": "root"}, "sites": sites}
        (workdir / "night.yaml").write_text(yaml.safe_dump({**farm, "backup": backup}))
        (workdir / "copy.yaml").write_text(yaml.safe_dump({**farm, "backup": {**backup, "offsite": {
            "target": "s3://wpfarm-copy/farm", "s3_endpoint_url": endpoint, "lock_days": 30}}}))
        (workdir / "dagster").mkdir()
        shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", workdir / "dagster" / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(workdir / "dagster"), "WPFARM_RESTIC_PASSWORD": "bench",
               "OFFSITE_ACCESS_KEY_ID": "copy", "OFFSITE_SECRET_ACCESS_KEY": "copy"}
        wpfarm = str(VENV / "wpfarm")
        rows = []
        print("| day | night s | copy s | copy/night | primary +MB | sent MB | sent/added |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for day in range(args.days):
            if day:
                change(db, sites, day)
            primary_before, copy_before = stored(primary), bucket_bytes(client, "wpfarm-copy")
            night = measured([wpfarm, "backup"], {**env, "WPFARM_CONFIG": str(workdir / "night.yaml")})
            copy = measured([wpfarm, "offsite", "copy"], {**env, "WPFARM_CONFIG": str(workdir / "copy.yaml")})
            added, sent = stored(primary) - primary_before, bucket_bytes(client, "wpfarm-copy") - copy_before
            rows.append((night["wall"], copy["wall"], added, sent))
            print(f"| {day} | {night['wall']:.1f} | {copy['wall']:.1f} | {copy['wall'] / night['wall']:.0%} | "
                  f"{added / MB:,.1f} | {sent / MB:,.1f} | {sent / added:.3f} |", flush=True)
        later = rows[1:] or rows
        shares = sorted(c / n for n, c, _, _ in later)
        ratios = sorted(s / a for _, _, a, s in later)
        print(f"\nnights after the first: the copy adds median {shares[len(shares) // 2]:.0%} of the night's wall time "
              f"(min {shares[0]:.0%}, max {shares[-1]:.0%}); bytes sent / bytes the night added: median "
              f"{ratios[len(ratios) // 2]:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f})")
    finally:
        moto.terminate()
        moto.wait(timeout=30)


if __name__ == "__main__":
    main()
