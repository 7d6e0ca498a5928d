"""Ten nights of realistic change on a farm, wpfarm against restic alone, in one run.

    .venv/bin/python -m benchmarks.daily_change --sites 20 --days 10

The farm: per site 15-23 MB of SQL and 70-95 MB of wp-content, of which ~30 MB of plugins and
themes are the same bytes on every site and the rest are the site's own uploads (incompressible).
Each day, before the night's backups, every site gets a few posts and comments, an option update
and 1-3 new uploads (200 KB-1 MB each).

Each night, each approach runs in a child process of its own (wall time; CPU time and bytes read,
`rchar`, of that process and all it started), into a fresh local directory of its own:
  wpfarm   `wpfarm backup`: database dumps (mariadb-dump | zstd | gpg, full each night) and files
           as restic snapshots, one repository per site;
  restic   restic alone, what an operator would run instead: per site one repository,
           `mariadb-dump | restic backup --stdin` and `restic backup wp-content wp-config.php`,
           4 sites at a time (wpfarm's default parallelism);
  before   the files format before the file store (tar | zstd | gpg, a full archive per night),
           stored bytes only: its database dumps are wpfarm's own, so "before" = wpfarm's dumps +
           these archives.
After the last night, one more night with no change: the bytes each approach's files step reads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from resources.mariadb import MariaDB
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import FILE_EXCLUDES
from wpfarm_assets.demo import WORDS, DemoSize, create_site_content, create_site_database, make_gpg_key

VENV = Path(sys.executable).parent
MB = 1e6
PARALLELISM = 4


def write_shared(content: Path, seed: int = 7) -> None:
    """~30 MB of plugins and themes, the same bytes on every site (text: compresses ~3x)."""
    rng = random.Random(seed)
    for plugin in range(12):
        for f in range(25):
            path = content / "plugins" / f"shared-plugin-{plugin}" / f"file-{f}.php"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("<?php\n" + " ".join(rng.choices(WORDS, k=16_000)))


def build(workdir: Path, db: MariaDB, sites: int) -> list[dict]:
    entries = []
    for i in range(sites):
        rng = random.Random(i)
        name = f"site{i:03d}.bench.wpfarm.test"
        database = f"wp_bench_{i:03d}"
        # ~15-23 MB of SQL; 40-65 MB of the site's own uploads; plus the shared plugins.
        sql = DemoSize(posts=rng.randint(1500, 2300), post_words=1000, uploads=0)
        create_site_database(db, database, name, sql, seed=i)
        content = create_site_content(workdir / "sites" / name, name, DemoSize(uploads=0), seed=i)
        write_shared(content)
        for u in range(rng.randint(40, 65)):
            path = content / "uploads" / "2025" / f"{1 + u % 12:02d}" / f"photo-{u}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(1_000_000))
        entries.append({"name": name, "database": database, "content_path": str(content)})
    return entries


def change(db: MariaDB, sites: list[dict], day: int) -> None:
    """A day of a site's life: a few posts and comments, an option update, 1-3 new uploads."""
    for i, site in enumerate(sites):
        rng = random.Random(day * 1000 + i)
        words = lambda n, rng=rng: " ".join(rng.choices(WORDS, k=n))  # noqa: E731
        db.query(f"INSERT INTO {site['database']}.wp_posts (post_author, post_date, post_date_gmt, post_content, "
                 "post_title, post_excerpt, post_name, to_ping, pinged, post_modified, post_modified_gmt, "
                 "post_content_filtered, guid, post_type) VALUES "
                 + ",".join(f"(1, NOW(), NOW(), '{words(800)}', '{words(5)}', '', 'day{day}-{p}', '', '', NOW(), NOW(), "
                            f"'', 'https://{site['name']}/?p=d{day}{p}', 'post')" for p in range(rng.randint(1, 3))))
        db.query(f"INSERT INTO {site['database']}.wp_comments (comment_post_ID, comment_author, comment_author_email, "
                 "comment_date, comment_date_gmt, comment_content) VALUES "
                 + ",".join(f"(1, 'Reader', 'r@example.org', NOW(), NOW(), '{words(40)}')" for _ in range(5)))
        db.query(f"UPDATE {site['database']}.wp_options SET option_value = '{words(3)}' WHERE option_name = 'blogname'")
        uploads = Path(site["content_path"]) / "uploads" / "2026" / "12"
        uploads.mkdir(parents=True, exist_ok=True)
        for u in range(rng.randint(1, 3)):
            (uploads / f"day{day}-{u}.jpg").write_bytes(rng.randbytes(rng.randint(200_000, 1_000_000)))


def measured(argv: list[str], env: dict) -> dict:
    """Run a child; its wall time, and CPU time and bytes read of it and everything it started."""
    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_read = rchar()
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before_cpu.ru_utime + after.ru_stime - before_cpu.ru_stime
    return {"wall": wall, "cpu": cpu, "read": rchar() - before_read}


def rchar() -> int:
    """Bytes this process and its reaped descendants read (read(2) and friends, pipes included)."""
    return int(next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar")).split()[1])


def stored(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def tree_bytes(sites: list[dict]) -> int:
    return sum(stored(Path(s["content_path"])) for s in sites)


# The baselines' night, in a child process: `python -m benchmarks.daily_change --night restic|before|files ...`.
def restic_alone_night(config: dict, repos: Path, files_only: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "RESTIC_PASSWORD": "bench"}

    def one(site: dict) -> None:
        repo = str(repos / site["name"])
        if not (Path(repo) / "config").exists():
            subprocess.run(["restic", "-r", repo, "init", "--repository-version", "2", "-q"], env=env, check=True)
        if not files_only:
            dump = subprocess.Popen(["mariadb-dump", "-h127.0.0.1", "-uroot", "--single-transaction", site["database"]],
                                    stdout=subprocess.PIPE)
            subprocess.run(["restic", "-r", repo, "backup", "-q", "--stdin", "--stdin-filename", f"{site['database']}.sql"],
                           stdin=dump.stdout, env=env, check=True)
            dump.stdout.close()
            assert dump.wait() == 0
        root, content = os.path.split(site["content_path"])
        excludes = [p.replace("wp-content/", f"{content}/", 1) for p in FILE_EXCLUDES]
        subprocess.run(["restic", "-r", repo, "backup", "-q", "--host", "bench",
                        *(f"--exclude={p if p.startswith('*') else os.path.join(root, p)}" for p in excludes),
                        content, "wp-config.php"], cwd=root, env=env, check=True)

    with ThreadPoolExecutor(PARALLELISM) as pool:
        list(pool.map(one, config["sites"]))


def wpfarm_files_night(config_path: Path, dry: bool = False) -> None:
    """`dry`: the same imports and configuration, no backup (what Python itself reads: subtracted)."""
    from concurrent.futures import ThreadPoolExecutor

    from resources.object_store import ObjectStoreResource
    from wpfarm_assets.backups.backup import back_up_files
    from wpfarm_assets.core.config import load_config

    config = load_config(config_path)
    if dry:
        return
    resource = ObjectStoreResource(target=config.backup.target, restic_password=os.environ["WPFARM_RESTIC_PASSWORD"])
    store = resource.store()
    with ThreadPoolExecutor(PARALLELISM) as pool:
        list(pool.map(lambda s: back_up_files(s, LocalRunner(), store, resource.repository(s.name)), config.sites))


def before_night(config_path: Path, target: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from resources.gpg import encrypt_argv
    from resources.object_store import open_store
    from wpfarm_assets.backups.backup import archive_files
    from wpfarm_assets.core.config import load_config

    config = load_config(config_path)
    store = open_store(f"file://{target}")
    enc = encrypt_argv(config.backup.gpg_recipient, config.backup.gpg_home)
    with ThreadPoolExecutor(PARALLELISM) as pool:
        list(pool.map(lambda s: archive_files(s, LocalRunner(), store, enc, config.backup.gpg_recipient), config.sites))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--workdir", default="/var/tmp/wpfarm-bench-daily")
    p.add_argument("--night", choices=["restic", "restic-files", "before", "wpfarm-files", "null"])
    args = p.parse_args()
    workdir = Path(args.workdir)
    config_path = workdir / "farm.yaml"
    if args.night:
        if args.night.startswith("restic"):
            restic_alone_night(yaml.safe_load(config_path.read_text()), workdir / "restic", args.night == "restic-files")
        elif args.night == "before":
            before_night(config_path, workdir / "before")
        else:
            wpfarm_files_night(config_path, dry=args.night == "null")
        return

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
    fingerprint = make_gpg_key(workdir / "gnupg")
    print(f"building {args.sites} sites in {workdir} ...", flush=True)
    sites = build(workdir, db, args.sites)
    config_path.write_text(yaml.safe_dump({
        "database": {"host": "127.0.0.1", "port": 3306, "user": "root"},
        "backup": {"target": f"file://{workdir / 'wpfarm'}", "gpg_recipient": fingerprint, "gpg_home": str(workdir / "gnupg")},
        "sites": sites,
    }))
    sql = sum(int(db.query(f"SELECT SUM(data_length) FROM information_schema.tables "
                           f"WHERE table_schema = '{s['database']}'")[0][0]) for s in sites)
    print(f"farm: {args.sites} sites, {tree_bytes(sites) / MB:,.0f} MB of wp-content, {sql / MB:,.0f} MB of table data",
          flush=True)
    (workdir / "dagster").mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", workdir / "dagster" / "dagster.yaml")
    env = {**os.environ, "WPFARM_CONFIG": str(config_path), "DAGSTER_HOME": str(workdir / "dagster"),
           "WPFARM_RESTIC_PASSWORD": "bench-farm-password"}
    me = [sys.executable, "-m", "benchmarks.daily_change", "--workdir", str(workdir), "--night"]
    rows = []
    print("| day | wpfarm MB | restic MB | ratio | before MB | wpfarm s | restic s | s ratio | wpfarm CPU s | restic CPU s "
          "| wpfarm read MB | restic read MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for day in range(args.days):
        if day:
            change(db, sites, day)
        w = measured([str(VENV / "wpfarm"), "backup"], env)
        r = measured(me + ["restic"], env)
        measured(me + ["before"], env)
        wpfarm_files = stored_files(workdir / "wpfarm")
        row = {"day": day, "wpfarm": stored(workdir / "wpfarm"), "wpfarm_files": wpfarm_files,
               "restic": stored(workdir / "restic"), "archives": stored(workdir / "before"),
               "before": stored(workdir / "before") + stored(workdir / "wpfarm") - wpfarm_files, "w": w, "r": r}
        rows.append(row)
        print(f"| {day} | {row['wpfarm'] / MB:,.0f} | {row['restic'] / MB:,.0f} | {row['wpfarm'] / row['restic']:.2f} | "
              f"{row['before'] / MB:,.0f} | {w['wall']:.1f} | {r['wall']:.1f} | {w['wall'] / r['wall']:.2f} | "
              f"{w['cpu']:.1f} | {r['cpu']:.1f} | {w['read'] / MB:,.0f} | {r['read'] / MB:,.0f} |", flush=True)
    nights = rows[1:]
    ratios = sorted(n["w"]["wall"] / n["r"]["wall"] for n in nights)
    last = rows[-1]
    print(f"\nafter {args.days} days: wpfarm stores {last['wpfarm'] / last['restic']:.2f}x restic alone, "
          f"{last['before'] / last['wpfarm']:.1f}x less than before the file store")
    if ratios:
        print(f"nights after the first: wall time wpfarm/restic median {ratios[len(ratios) // 2]:.2f} "
              f"(min {ratios[0]:.2f}, max {ratios[-1]:.2f})")
    extrapolate(rows, args.sites)
    content = tree_bytes(sites)
    python = measured(me + ["null"], env)["read"]  # the child's own imports, read by every night's child
    wf, rf = measured(me + ["wpfarm-files"], env), measured(me + ["restic-files"], env)
    wread, rread = wf["read"] - python, rf["read"] - python
    print(f"a night with no change, files only (less {python / MB:.1f} MB that Python reads to start): wpfarm read "
          f"{wread / MB:.1f} MB ({wread / content:.1%} of {content / MB:,.0f} MB of wp-content) in {wf['wall']:.1f} s; "
          f"restic alone read {rread / MB:.1f} MB ({rread / content:.1%}) in {rf['wall']:.1f} s")
    (workdir / "results.json").write_text(json.dumps(rows, indent=1))


def extrapolate(rows: list[dict], sites: int, farm: int = 500, nights: int = 365) -> None:
    """A year of nights for `farm` sites under retention (52 points: 14 daily, 26 weekly, 12
    monthly), from this run's per-site sizes: day 0, and the median growth of a night after it.
    - files (both): every upload is kept (none is deleted here), so day 0 + 364 nights of growth;
    - wpfarm's dumps: 52 full dumps (the size of the last night's);
    - restic alone's dumps: its day 0 holds the first; each kept point then holds what its night
      added (restic's growth less the files' growth), 52 of them;
    - before: 52 full archives and dumps. The kept points' mean age is ~275 nights (14 dailies at
      ~358, 26 weeklies at ~274, 12 monthlies at ~183), so an archive averages day 0's plus 275
      nights of file growth."""
    def growth(key: str) -> float:
        steps = sorted(b[key] - a[key] for a, b in zip(rows, rows[1:], strict=False))
        return steps[len(steps) // 2] / sites
    last, first = rows[-1], rows[0]
    dump = (last["wpfarm"] - last["wpfarm_files"] - (rows[-2]["wpfarm"] - rows[-2]["wpfarm_files"])) / sites
    files0, archive0, files_growth = first["wpfarm_files"] / sites, first["archives"] / sites, growth("wpfarm_files")
    wpfarm = farm * (files0 + (nights - 1) * files_growth + 52 * dump)
    restic = farm * (first["restic"] / sites + (nights - 1) * files_growth + 52 * max(0.0, growth("restic") - files_growth))
    before = farm * 52 * (archive0 + 275 * files_growth + dump)
    tb = 1e12
    print(f"extrapolated to {farm} sites, a year of nights, 52 restore points: wpfarm {wpfarm / tb:.2f} TB, restic alone "
          f"{restic / tb:.2f} TB (ratio {wpfarm / restic:.2f}), before the file store {before / tb:.2f} TB "
          f"({before / wpfarm:.1f}x wpfarm); per site: a full dump {dump / 1e6:.1f} MB, files {files0 / 1e6:.1f} MB "
          f"on day 0, +{files_growth / 1e6:.2f} MB a night, restic alone +{growth('restic') / 1e6:.2f} MB a night")


def stored_files(target: Path) -> int:
    """wpfarm's file store: every site's restic repository (and its files manifests, a few KB)."""
    return sum(stored(site / "restic") + stored(site / "files") for site in (target / "sites").glob("*"))


if __name__ == "__main__":
    main()
