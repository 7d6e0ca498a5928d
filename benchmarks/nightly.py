"""The nightly backup of a whole farm, against baselines on the same data, in one run.

    .venv/bin/python -m benchmarks.nightly --sites 500 --profile small
    .venv/bin/python -m benchmarks.nightly --sites 50 --profile heavy

Approaches (every one writes to a fresh local directory: the "upload" costs the same for all and
would otherwise measure the S3 server on this 2-core machine, not the approach):
  seed     the seed's scripts: for each site in turn, `mariadb-dump | gzip | gpg` (gpg's default
           settings, so zlib again) to a file, the same for `tar`, then the upload (a copy);
  floor    the same dumps and tars, read and thrown away, with wpfarm's parallelism: the least any tool
           can do;
  chain    the artifact's tool chain alone: `dump | zstd -3 | gpg > file`, `tar | zstd -3 | gpg > file`,
           processes piped to each other, wpfarm's parallelism: what the artifact costs with no
           orchestration (wpfarm itself runs zstd in-process, slightly cheaper than the command);
  bookkeeping  `wpfarm backup` with each site's backup replaced by nothing (benchmarks/bookkeeping.py):
           the orchestration alone, runs, partitions and events included;
  wpfarm   `wpfarm backup`: every site in runs of backup.sites_per_run, dumps then archives, each
           step with its tier's parallelism, zstd + gpg, manifests, materializations;
  per-run  wpfarm with one run per site (`wpfarm backup SITE`, 4 at a time as the run queue
           allows), timed on --sample-c sites and scaled to the whole farm (said in the output).
Reported: wall time, CPU time (user+sys of every process), peak memory (the largest sum of the PSS
of all processes at once, sampled every 50 ms), bytes stored; then the ratios the issue asks for.
Farms are built once under /var/tmp/wpfarm-bench-* and reused (--rebuild to start over).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resources.gpg import encrypt_argv
from resources.mariadb import MariaDB
from resources.ssh import CHUNK, LocalRunner
from wpfarm_assets.backups.backup import tar_argv
from wpfarm_assets.backups.pipeline import COMPRESSION_LEVEL
from wpfarm_assets.core.config import load_config
from wpfarm_assets.demo import DemoSize, make_demo_farm, make_gpg_key

PROFILES = {
    "small": DemoSize(),  # ~0.2 MB of SQL, ~0.5 MB of files
    "heavy": DemoSize(posts=2500, post_words=3000, uploads=100, upload_bytes=1 << 20),  # ~50 MB SQL, ~100 MB files
}
VENV = Path(sys.executable).parent


class PeakMemory:
    """Samples the memory of this process and all its descendants: the sum of their PSS.

    PSS, not RSS: pages shared between processes count once. A child just forked from a large
    Python process shows that process's whole RSS until it execs, and summed RSS counted it twice.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    def _tree_pss(self) -> int:
        parents = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
        me, total = os.getpid(), 0
        for pid in parents:
            p = pid
            while p and p != me:
                p = parents.get(p, 0)
            if p == me:
                total += self._pss(pid)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_pss())
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(label: str, work, target: Path | None) -> dict:
    if target:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
    cpu0, own0 = children_cpu(), time.process_time()
    started = time.monotonic()
    with PeakMemory() as memory:
        note = work()
    wall = time.monotonic() - started
    stored = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) if target else 0
    return {"label": label, "wall": wall, "cpu": children_cpu() - cpu0 + time.process_time() - own0,
            "peak_mb": memory.peak / 1e6, "stored_mb": stored / 1e6, "note": note or ""}


def build_farm(workdir: Path, sites: int, profile: str, rebuild: bool) -> Path:
    config_path = workdir / "farm.yaml"
    if config_path.exists() and not rebuild:
        return config_path
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    fingerprint = make_gpg_key(workdir / "gnupg")
    db = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
    started = time.monotonic()
    make_demo_farm(workdir, db, sites=sites, gpg_recipient=fingerprint, target=f"file://{workdir / 'wpfarm'}",
                   gpg_home=str(workdir / "gnupg"), size=PROFILES[profile], prefix=f"b{profile[0]}{sites}")
    print(f"built {sites} {profile} sites in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return config_path


def drain(argv: list[str]) -> None:
    """Run `argv` and read its output to the end, throwing it away.

    Not `> /dev/null`: GNU tar notices that its archive is /dev/null and then skips reading the
    files' contents, which made an earlier floor cost nothing for the files.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    while proc.stdout.read1(CHUNK):
        pass
    proc.stdout.close()
    if proc.wait() not in (0, 1):  # tar: 1 = a file changed while it was read (as wpfarm accepts)
        raise subprocess.CalledProcessError(proc.returncode, argv)


def each_site_stream(config, handle) -> None:
    """`handle(site, argv)` for every site's dump, then every site's tar, with wpfarm's parallelism."""
    db = MariaDB(LocalRunner(), config.database.host, config.database.port, config.database.user, None)

    def dump(site):
        handle(site, db.dump_argv(site.database))

    def archive(site):
        handle(site, tar_argv(site.content_path, (Path(site.content_path).parent / "wp-config.php").exists()))

    with ThreadPoolExecutor(config.database.parallelism) as pool:
        list(pool.map(dump, config.sites))
    with ThreadPoolExecutor(config.storage.parallelism) as pool:
        list(pool.map(archive, config.sites))


def run_floor(config) -> None:
    each_site_stream(config, lambda site, argv: drain(argv))


def run_chain(config, target: Path) -> None:
    """The artifact's tool chain with nothing around it: `dump | zstd | gpg > file` and `tar | zstd |
    gpg > file`, the processes piped to each other directly, with wpfarm's parallelism."""
    encrypt = encrypt_argv(config.backup.gpg_recipient, config.backup.gpg_home)

    def chain(site, first: list[str]) -> None:
        with open(target / f"{site.name}.{first[0]}.zst.gpg", "wb") as sink:
            source = subprocess.Popen(first, stdout=subprocess.PIPE)
            compress = subprocess.Popen(["zstd", f"-{COMPRESSION_LEVEL}", "--single-thread", "-q", "-c"],
                                        stdin=source.stdout, stdout=subprocess.PIPE)
            source.stdout.close()
            subprocess.run(encrypt, stdin=compress.stdout, stdout=sink, check=True)
            compress.stdout.close()
            if source.wait() not in (0, 1) or compress.wait() != 0:  # tar: 1 = a file changed while read
                raise RuntimeError(f"{first[0]} | zstd failed for {site.name}")

    each_site_stream(config, chain)


SEED_DB = 'mariadb-dump --single-transaction --quick -h 127.0.0.1 -u root "$DB" | gzip | gpg --batch --homedir "$GNUPG" --trust-model always -e -r "$KEY" > "$OUT"'
SEED_FILES = 'tar -czf - -C "$ROOT" wp-content wp-config.php | gpg --batch --homedir "$GNUPG" --trust-model always -e -r "$KEY" > "$OUT"'


def run_seed(config, scratch: Path, target: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    for site in config.sites:
        for kind, script in (("db", SEED_DB), ("files", SEED_FILES)):
            out = scratch / f"{site.name}.{kind}.gpg"
            env = {**os.environ, "DB": site.database, "ROOT": str(Path(site.content_path).parent), "OUT": str(out),
                   "GNUPG": config.backup.gpg_home, "KEY": config.backup.gpg_recipient}
            subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, check=True)
            shutil.copy(out, target / out.name)
            out.unlink()


def wpfarm_env(config_path: Path, home: Path, instance: str = "sqlite") -> dict:
    """A fresh Dagster instance: the local default (SQLite, dagster.yaml) or the production one
    (PostgreSQL on this machine, dagster.production.yaml, in a new database named after `home`)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, "WPFARM_CONFIG": str(config_path), "DAGSTER_HOME": str(home),
           "WPFARM_RESTIC_PASSWORD": os.environ.get("WPFARM_RESTIC_PASSWORD", "benchmark")}
    repo = Path(__file__).resolve().parent.parent
    if instance == "sqlite":
        shutil.copy(repo / "dagster.yaml", home / "dagster.yaml")
        return env
    db = "wpfarm_bench_" + home.name.replace("-", "_")
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=True, capture_output=True)
    subprocess.run([*psql, f"CREATE DATABASE {db}"], check=True, capture_output=True)
    shutil.copy(repo / "dagster.production.yaml", home / "dagster.yaml")
    return {**env, "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": db}


def run_wpfarm(config_path: Path, home: Path, instance: str = "sqlite", bookkeeping_only: bool = False) -> str:
    command = [sys.executable, "-m", "benchmarks.bookkeeping"] if bookkeeping_only else [str(VENV / "wpfarm"), "backup"]
    done = subprocess.run(command, env=wpfarm_env(config_path, home, instance), capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    runs = done.stdout.count("run ")
    failed = done.stdout.count("FAILED")
    return f"{runs} runs, {failed} failed" + (f"; {done.stderr.strip().splitlines()[-1][:200]}" if failed else "")


def run_per_site(env: dict, names: list[str]) -> str:
    def one(name):
        subprocess.run([str(VENV / "wpfarm"), "backup", name], env=env, capture_output=True, check=True)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, names))
    return f"{len(names)} one-site runs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
    parser.add_argument("--sample-c", type=int, default=40, help="sites timed for one-run-per-site, then scaled")
    parser.add_argument("--skip", nargs="*", default=[], choices=["seed", "per-run"])
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--instance", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"],
                        help="Dagster instance(s) wpfarm records to: local SQLite and/or the production PostgreSQL")
    args = parser.parse_args()

    workdir = Path(f"/var/tmp/wpfarm-bench-{args.profile}-{args.sites}")
    config_path = build_farm(workdir, args.sites, args.profile, args.rebuild)
    os.environ["WPFARM_CONFIG"] = str(config_path)
    config = load_config(config_path)
    names = [s.name for s in config.sites]
    target = Path(config.backup.target[len("file://"):])

    run_floor(config)  # once unmeasured: every approach then reads from the same warm page cache
    results = [measure("floor", lambda: run_floor(config), None),
               measure("chain", lambda: run_chain(config, workdir / "chain"), workdir / "chain"),
               measure("bookkeeping", lambda: run_wpfarm(config_path, workdir / "dagster-bookkeeping", args.instance[0],
                                                         bookkeeping_only=True), None)]
    for instance in args.instance:
        label = "wpfarm" if instance == args.instance[0] else f"wpfarm-{instance}"
        results.append(measure(label, lambda i=instance: run_wpfarm(config_path, workdir / f"dagster-{i}", i), target))
    if "seed" not in args.skip:
        results.append(measure("seed", lambda: run_seed(config, workdir / "seed-scratch", workdir / "seed"), workdir / "seed"))
    if "per-run" not in args.skip:
        env = wpfarm_env(config_path, workdir / "dagster-per-site")
        subprocess.run([str(VENV / "wpfarm"), "backup", names[0]], env=env, capture_output=True, check=True)  # adds partitions
        sample = names[1 : args.sample_c + 1]
        r = measure("per-run", lambda: run_per_site(env, sample), target)
        scale = len(names) / len(sample)
        for key in ("wall", "cpu"):
            r[key] *= scale
        r["stored_mb"] *= scale
        r["note"] += f", scaled x{scale:.1f} to {len(names)} sites"
        results.append(r)

    by = {r["label"]: r for r in results}
    print(f"\n{args.sites} {args.profile} sites; database.parallelism={config.database.parallelism}, "
          f"storage.parallelism={config.storage.parallelism}, sites_per_run={config.backup.sites_per_run}, {os.cpu_count()} cores")
    print(f"{'approach':11} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'stored MB':>10}  note")
    for r in results:
        print(f"{r['label']:11} {r['wall']:8.1f} {r['cpu']:8.1f} {r['peak_mb']:8.0f} {r['stored_mb']:10.1f}  {r['note']}")
    floor, chain, ours = by["floor"]["wall"], by["chain"]["wall"], by["wpfarm"]["wall"]
    overhead = ours - floor
    print(f"\nwpfarm / floor: {ours / floor:.2f}x; orchestration overhead (wpfarm - floor) {overhead:.1f}s "
          f"= {overhead / ours:.0%} of wpfarm's wall time")
    print(f"of which the tool chain's own work (chain - floor) {chain - floor:.1f}s, and wpfarm around the "
          f"same chain (wpfarm - chain) {ours - chain:.1f}s = {(ours - chain) / ours:.0%} of wpfarm's wall time")
    print(f"the orchestration alone (bookkeeping: the same command, no backup work) {by['bookkeeping']['wall']:.1f}s; "
          f"wpfarm - chain is {(ours - chain) / by['bookkeeping']['wall']:.2f}x that")
    if "seed" in by:
        print(f"seed / wpfarm: {by['seed']['wall'] / ours:.2f}x (wpfarm is that much faster)")
    if "per-run" in by:
        per_run_overhead = by["per-run"]["wall"] - floor
        print(f"per-run overhead {per_run_overhead:.1f}s; wpfarm's is {overhead / per_run_overhead:.3f} of it")


if __name__ == "__main__":
    main()
