"""The RTO a restore drill measures, for a median demo site and a heavy one, against the bare tool
chain restoring the same backups in the same run.

    .venv/bin/python -m benchmarks.drill_rto --runs 3

The sites: `median` is a demo site (DemoSize(): ~0.1 MB of SQL, 27 files); `heavy` has ~50 MB of
SQL and ~100 MB of wp-content (100 incompressible 1 MB uploads). Both are backed up once with
`wpfarm backup` into a local target. Then, `--runs` times each, alternating:
  drill  `wpfarm drill SITE`: the RTO it records (restore of the dump into a scratch database and
         of the snapshot into a scratch folder, through wpfarm's restore code, plus the proofs),
         and the command's wall time (with Dagster's run around it);
  bare   what an operator would type by hand for the same two backups:
         `gpg -d OBJECT | zstd -d | mariadb SCRATCH` and `restic restore SNAPSHOT --target DIR`.
Medians are printed as JSON; the ratio is drill RTO / bare.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from resources.mariadb import MariaDB
from resources.restic import site_password
from resources.ssh import LocalRunner
from wpfarm_assets.demo import DemoSize, create_site_content, create_site_database, make_gpg_key

SITES = {"median": DemoSize(), "heavy": DemoSize(posts=3300, post_words=2400, uploads=0)}


def build(workdir: Path, db: MariaDB) -> tuple[Path, list[dict]]:
    fingerprint = make_gpg_key(workdir / "gnupg")
    entries = []
    for i, (label, size) in enumerate(SITES.items()):
        name, database = f"{label}.rto.wpfarm.test", f"wp_rto_{label}"
        db.drop_database(database)
        create_site_database(db, database, name, size, seed=i)
        content = create_site_content(workdir / "sites" / name, name, size, seed=i)
        if label == "heavy":
            rng = random.Random(i)
            for u in range(100):
                path = content / "uploads" / "2026" / f"{1 + u % 12:02d}" / f"photo-{u}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(rng.randbytes(1_000_000))
        entries.append({"name": name, "database": database, "content_path": str(content)})
    config = {"database": {"host": "127.0.0.1", "port": 3306, "user": "root"},
              "backup": {"target": f"file://{workdir / 'backups'}", "gpg_recipient": fingerprint,
                         "gpg_home": str(workdir / "gnupg")},
              "drill": {"scratch_root": str(workdir / "drills"), "gnupg_home": str(workdir / "gnupg")},
              "sites": entries}
    path = workdir / "farm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, entries


def wpfarm(env: dict, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "wpfarm_assets.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wpfarm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def newest(path: Path, suffix: str) -> Path:
    return sorted(p for p in path.iterdir() if p.name.endswith(suffix))[-1]


def bare(workdir: Path, site: dict, db: MariaDB) -> float:
    """gpg -d | zstd -d | mariadb, then restic restore: the same newest backups, by hand."""
    backups = workdir / "backups" / "sites" / site["name"]
    dump = newest(backups / "db", ".sql.zst.gpg")
    snapshot = json.loads(newest(backups / "files", ".json").read_text())["snapshot_id"]
    scratch_db, scratch_dir = "wp_rto_bare", Path(tempfile.mkdtemp(dir=workdir))
    db.drop_database(scratch_db)
    env = {**os.environ, "GNUPGHOME": str(workdir / "gnupg"),
           "RESTIC_PASSWORD": site_password(os.environ["WPFARM_RESTIC_PASSWORD"], site["name"])}
    started = time.monotonic()
    subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "-e", f"CREATE DATABASE {scratch_db}"], check=True)
    gpg = subprocess.Popen(["gpg", "--batch", "-q", "-d", str(dump)], stdout=subprocess.PIPE, env=env)
    zstd = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=gpg.stdout, stdout=subprocess.PIPE)
    gpg.stdout.close()
    subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "--binary-mode", scratch_db], stdin=zstd.stdout, check=True)
    zstd.stdout.close()
    assert gpg.wait() == 0 and zstd.wait() == 0
    subprocess.run(["restic", "-r", str(backups / "restic"), "restore", snapshot, "--target", str(scratch_dir), "-q"],
                   env=env, check=True)
    seconds = time.monotonic() - started
    db.drop_database(scratch_db)
    shutil.rmtree(scratch_dir)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wpfarm-rto-")).resolve()
    db = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
    config, sites = build(workdir, db)
    env = {**os.environ, "WPFARM_CONFIG": str(config), "DAGSTER_HOME": str(workdir / "dagster"),
           "WPFARM_RESTIC_PASSWORD": os.environ.get("WPFARM_RESTIC_PASSWORD", "rto-benchmark")}
    os.environ["WPFARM_RESTIC_PASSWORD"] = env["WPFARM_RESTIC_PASSWORD"]
    (workdir / "dagster").mkdir(exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", workdir / "dagster" / "dagster.yaml")
    wpfarm(env, "backup")
    results = {}
    for label, site in zip(SITES, sites, strict=True):
        runs = {"rto": [], "db_seconds": [], "files_seconds": [], "wall": [], "bare": []}
        for _ in range(args.runs):
            runs["wall"].append(wpfarm(env, "drill", site["name"]))
            drills = workdir / "backups" / "sites" / site["name"] / "drills"
            record = json.loads(newest(drills, ".json").read_text())
            assert record["passed"], record
            runs["rto"].append(record["rto_seconds"])
            runs["db_seconds"].append(record["db_seconds"])
            runs["files_seconds"].append(record["files_seconds"])
            runs["bare"].append(bare(workdir, site, db))
        median = {k: round(statistics.median(v), 2) for k, v in runs.items()}
        results[label] = {**median, "ratio_rto_to_bare": round(median["rto"] / median["bare"], 2),
                          "sql_mb": round(record["db_bytes"] / 1e6, 1), "files_mb": round(record["files_bytes"] / 1e6, 1),
                          "files": record["files"], "runs": args.runs}
    print(json.dumps(results, indent=2))
    for site in sites:
        db.drop_database(site["database"])


if __name__ == "__main__":
    main()
