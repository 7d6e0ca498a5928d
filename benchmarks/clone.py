"""A clone of the heavy demo site against a plain restore of the same backup, and what a checkpoint
adds to an in-place restore, in one run.

    .venv/bin/python -m benchmarks.clone --runs 3

The site: ~50 MB of SQL (2500 posts of 3000 words, each with a link to the site, so every post is
rewritten) and ~100 MB of wp-content (100 incompressible 1 MB uploads), backed up once with
`wpfarm backup` into a local target. Then `--runs` times each, alternating:
  restore     `wpfarm restore SITE --to-database X --to-path D` (the baseline: the same backups);
  clone       `wpfarm clone SITE NEW` (restore + the serialized-aware rewrite + blog_public), then
              `wpfarm clone --delete NEW`; its record gives the rows rewritten and the rewrite's time;
  in place    `wpfarm restore SITE` with its checkpoint, and with `--no-checkpoint`;
  backup      `wpfarm backup SITE` (what the checkpoint is: one nightly backup of the site).
Targets: clone <= 1.3x restore; checkpoint (in place with - without) <= one backup.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from resources.mariadb import MariaDB
from resources.ssh import LocalRunner
from wpfarm_assets.demo import DemoSize, create_site_content, create_site_database, make_gpg_key

VENV = Path(sys.executable).parent
HEAVY = DemoSize(posts=2500, post_words=3000, uploads=0)


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started, done.stdout


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workdir", default="/var/tmp/wpfarm-bench-clone")
    args = p.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
    name, database = "heavy.clone.wpfarm.test", "wp_bench_clone"
    db.drop_database(database)
    create_site_database(db, database, name, HEAVY, seed=3)
    db.query(f"UPDATE {database}.wp_posts SET post_content = CONCAT(post_content, "
             f"' <a href=\"https://{name}/?p=', ID, '\">more</a>')")
    content = create_site_content(workdir / "sites" / name, name, DemoSize(uploads=0), seed=3)
    for u in range(100):
        path = content / "uploads" / "2026" / f"photo-{u}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1_000_000))
    fingerprint = make_gpg_key(workdir / "gnupg")
    config = workdir / "farm.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"host": "127.0.0.1", "port": 3306, "user": "root"},
        "backup": {"target": f"file://{workdir / 'backups'}", "gpg_recipient": fingerprint,
                   "gpg_home": str(workdir / "gnupg")},
        "provisioning": {"sites_root": str(workdir / "clones")},
        "sites": [{"name": name, "database": database, "content_path": str(content)}]}))
    (workdir / "dagster").mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", workdir / "dagster" / "dagster.yaml")
    env = {**os.environ, "WPFARM_CONFIG": str(config), "DAGSTER_HOME": str(workdir / "dagster"),
           "WPFARM_RESTIC_PASSWORD": "bench", "GNUPGHOME": str(workdir / "gnupg")}
    wpfarm = str(VENV / "wpfarm")
    sql = int(db.query(f"SELECT SUM(data_length) FROM information_schema.tables WHERE table_schema = '{database}'")[0][0])
    print(f"site {name}: {sql / 1e6:.0f} MB of table data, {sum(f.stat().st_size for f in content.rglob('*') if f.is_file()) / 1e6:.0f} MB of wp-content", flush=True)
    timed([wpfarm, "backup", name], env)
    times: dict[str, list[float]] = {k: [] for k in ("restore", "clone", "in place", "no checkpoint", "backup")}
    rows, rewrite = [], []
    for run in range(args.runs):
        scratch, folder = "wp_bench_clone_restore", workdir / "restored"
        times["restore"].append(timed([wpfarm, "restore", name, "--to-database", scratch, "--to-path", str(folder)], env)[0])
        db.drop_database(scratch)
        shutil.rmtree(folder)
        clone = f"c{run}.{name}"
        seconds, out = timed([wpfarm, "clone", name, clone], env)
        times["clone"].append(seconds)
        rows.append(sum(int(n) for n in re.findall(r": (\d+) row\(s\) rewritten", out)))
        record = json.loads((workdir / "backups" / "clones" / f"{clone}.json").read_text())
        rewrite.append(record["rewrite_seconds"])
        timed([wpfarm, "clone", "--delete", clone], env)
        times["in place"].append(timed([wpfarm, "restore", name], env)[0])
        times["no checkpoint"].append(timed([wpfarm, "restore", name, "--no-checkpoint"], env)[0])
        times["backup"].append(timed([wpfarm, "backup", name], env)[0])
        print(json.dumps({k: round(v[-1], 1) for k, v in times.items()}), flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    checkpoint = median["in place"] - median["no checkpoint"]
    print(json.dumps({k: round(v, 1) for k, v in median.items()}))
    print(f"clone / restore: {median['clone'] / median['restore']:.2f}x (target <= 1.3x); rows rewritten: "
          f"{statistics.median(rows):.0f} in {statistics.median(rewrite):.1f} s, "
          f"{statistics.median(rows) / statistics.median(rewrite):,.0f} rows/s")
    print(f"checkpoint: +{checkpoint:.1f} s on an in-place restore of {median['no checkpoint']:.1f} s; one backup of the "
          f"site takes {median['backup']:.1f} s (target: checkpoint <= one backup)")
    db.drop_database(database)


if __name__ == "__main__":
    main()
