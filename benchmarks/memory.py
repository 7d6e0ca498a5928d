"""Peak memory of a database backup against database size: flat, not proportional.

Builds two demo sites on the local MariaDB (about 10 MB and about 1 GB of SQL), backs each up to a
local target in its own child process, and reports that process's peak RSS (the Python process that
streams everything) with the ratio of the large site to the small one, which is the baseline
measured in the same run. (The tools' own memory is bounded by design: mariadb-dump --quick reads
row by row, zstd -3 keeps a window of a few MiB per thread, gpg encrypts as a stream. Their
ru_maxrss is not reported: on Linux it counts the parent's image they were forked from.)

    .venv/bin/python -m benchmarks.memory [--large-mb 1024] [--small-mb 10] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resources.gpg import encrypt_argv
from resources.mariadb import MariaDB
from resources.object_store import open_store
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import back_up_database
from wpfarm_assets.core.config import Site
from wpfarm_assets.demo import DemoSize, create_site_database, make_gpg_key

POST_WORDS = 3000  # about 20 KB of SQL per post


def client() -> MariaDB:
    return MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)


def child(database: str, target: str, recipient: str, home: str) -> None:
    site = Site(name="bench.example.com", database=database, content_path="/nonexistent/wp-content")
    backup = back_up_database(site, client(), open_store(target), encrypt_argv(recipient, home), recipient)
    print(json.dumps({
        "python_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "plaintext_bytes": backup.manifest.plaintext_bytes,
        "stored_bytes": backup.manifest.stored_bytes,
        "seconds": backup.manifest.duration_seconds,
    }))


def measure(database: str, target: str, recipient: str, home: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", database, target, recipient, home],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4, metavar=("DB", "TARGET", "RECIPIENT", "HOME"))
    parser.add_argument("--small-mb", type=int, default=10)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases for another run")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    work = Path(tempfile.mkdtemp(prefix="wpfarm-bench-"))
    recipient = make_gpg_key(work / "gnupg")
    db = client()
    sizes = {"small": args.small_mb, "large": args.large_mb}
    for label, mb in sizes.items():
        database = f"wpbench_{mb}mb"
        if not db.database_exists(database):
            started = time.monotonic()
            posts = max(1, mb * (1 << 20) // (POST_WORDS * 7))
            create_site_database(db, database, f"{label}.bench.example", DemoSize(posts=posts, post_words=POST_WORDS), seed=mb)
            print(f"built {database} ({posts} posts) in {time.monotonic() - started:.0f}s", file=sys.stderr)
    results = {}
    for label, mb in sizes.items():
        runs = [measure(f"wpbench_{mb}mb", f"file://{work / 'backups'}", recipient, str(work / "gnupg"))
                for _ in range(args.repeat)]
        runs.sort(key=lambda r: r["python_peak_kib"])
        results[label] = runs[len(runs) // 2]  # the median run by Python peak
        results[label]["python_peak_runs_kib"] = [r["python_peak_kib"] for r in runs]
    small, large = results["small"], results["large"]
    print(f"{'site':6} {'dump MB':>9} {'stored MB':>10} {'seconds':>8} {'peak RSS MB':>12}")
    for label, r in results.items():
        print(f"{label:6} {r['plaintext_bytes'] / 1e6:9.1f} {r['stored_bytes'] / 1e6:10.1f} {r['seconds']:8.2f} "
              f"{r['python_peak_kib'] / 1024:12.1f}")
    print(f"ratio large/small: dump size {large['plaintext_bytes'] / small['plaintext_bytes']:.0f}x, "
          f"peak RSS {large['python_peak_kib'] / small['python_peak_kib']:.3f} (median of {args.repeat} runs each)")
    if not args.keep:
        for mb in sizes.values():
            db.drop_database(f"wpbench_{mb}mb")


if __name__ == "__main__":
    main()
