"""Retention over a farm: 500 sites x 60 daily backups on moto_server, time and S3 request count.

Seeds the bucket (one small object and one manifest per backup), then, in one run:
  floor      one paginated listing of the farm and nothing else (the least any retention can do);
  retention  what the retention asset does for a run of all sites: list_sites (one farm-wide
             listing), then apply_retention for every site, 8 at a time.
Prints wall time and requests for both and the ratio. moto_server is started here on a free
loopback port and stopped at the end.

    .venv/bin/python -m benchmarks.retention [--sites 500] [--backups 60] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3

from resources.object_store import S3Store
from wpfarm_assets.backups.retention import apply_retention, list_sites
from wpfarm_assets.core.keys import BackupKey


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def counted_store(endpoint: str, bucket: str) -> tuple[S3Store, Counter]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    calls: Counter = Counter()
    client.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
    return S3Store(bucket, "farm", client), calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--backups", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    moto, endpoint = start_moto()
    try:
        store, calls = counted_store(endpoint, "wpfarm-bench")
        store._s3.create_bucket(Bucket="wpfarm-bench")
        sites = [f"site{i:04d}.bench.example" for i in range(args.sites)]
        last = datetime(2026, 11, 27, 2, tzinfo=timezone.utc)
        data = b"x" * 512

        def seed(site: str) -> None:
            for d in range(args.backups):
                key = BackupKey(site, "db", last - timedelta(days=d))
                store.put_bytes(key.data_key, data)
                store.put_bytes(key.manifest_key, json.dumps({"stored_bytes": len(data)}).encode())

        started = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(seed, sites))
        print(f"seeded {args.sites} sites x {args.backups} backups ({2 * args.sites * args.backups} objects) "
              f"in {time.monotonic() - started:.0f}s", file=sys.stderr)

        def measure(work) -> tuple[float, int, Counter, list]:
            calls.clear()
            started = time.monotonic()
            with ThreadPoolExecutor(args.workers) as pool:
                results = work(pool)
            return time.monotonic() - started, sum(calls.values()), Counter(calls), results

        floor_s, floor_n, _, _ = measure(lambda pool: list(store.list("sites/")))
        now = last + timedelta(hours=1)

        def retention(pool):
            listings = list_sites(store, sites)
            return list(pool.map(lambda site: apply_retention(store, site, now, listing=listings[site]), sites))

        ret_s, ret_n, ret_calls, reports = measure(retention)
        deleted = sum(r.deleted for r in reports)
        remaining = sum(1 for site in sites[:1] for _ in store.list(f"sites/{site}/db/")) // 2
        print(f"{'run':10} {'seconds':>8} {'requests':>9}")
        print(f"{'floor':10} {floor_s:8.1f} {floor_n:9d}")
        print(f"{'retention':10} {ret_s:8.1f} {ret_n:9d}   {dict(ret_calls)}")
        print(f"ratio retention/floor: time {ret_s / floor_s:.2f}, requests {ret_n / floor_n:.2f}; "
              f"deleted {deleted} backups, {remaining} kept per site ({args.sites} sites, {args.workers} workers)")
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
