"""Point-in-time recovery on a real 3-node Galera cluster (started here, as the tests start it):
the recovery point under steady writes, what an archive run costs against `mariadb-binlog --raw`
alone, what a replay costs against the bare `mariadb-binlog --database | mariadb`, the archive's
bytes per 1,000 writes, and a large dump under write load (no global lock, writers never stall).

    .venv/bin/python -m benchmarks.pitr                       # about 6 minutes
    .venv/bin/python -m benchmarks.pitr --every 300 --minutes 60 --dump-mb 500   # the hour, 500 MB

rpo     a writer commits one WordPress-shaped write every 0.2 s through node 2 while `binlog_archive`
        runs every `--every` seconds for `--minutes`; the archive's age (now - newest archived event)
        is sampled every second: median and worst are the RPO.
cost    `--logs` small binary logs (~0.7 MB each), then one big one, are written, then archived by
        wpfarm (FLUSH, remote read, zstd, gpg, store, manifest) and, alternately, copied by
        `mariadb-binlog --read-from-remote-server --raw` alone into a folder (bare), and that copy
        then compressed and encrypted file by file (`zstd -3 | gpg -e`: the bare chain that stores
        what the brief asks); `--runs` times each, medians.
replay  a site dumped, then `--writes` transactions on it (what 12 h of a busy site writes), archived;
        wpfarm's replay (fetch, sha256, decrypt, read, `mariadb-binlog | mariadb`) against the bare
        `mariadb-binlog --database=DB --start-position=GTID LOGS | mariadb` on the same plain logs.
dump    a `--dump-mb` MB site dumped by wpfarm while node 3 takes steady writes: FLUSH TABLES WITH
        READ LOCK in the general log or not, wsrep_flow_control_paused, the slowest write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from resources.gpg import GPGResource, decrypt_argv
from resources.mariadb import MariaDB, Node
from resources.object_store import LocalStore
from resources.ssh import LocalRunner
from tests.services import galera_cluster
from wpfarm_assets.backups.backup import back_up_database
from wpfarm_assets.backups.pitr import archive_binlogs, read_archive, restore_to_time
from wpfarm_assets.core.binlog import parse_position, seq_in
from wpfarm_assets.core.config import Site
from wpfarm_assets.demo import DemoSize, create_site_database, make_gpg_key

# What an operator's stock chain needs on Galera too: a node refuses any `SET @@SESSION.server_id`.
STRIP_ORIGINAL_GTIDS = (r"/^\/\*M!100001 SET @@session\.(gtid_seq_no|gtid_domain_id|server_id)=[0-9]+\*\/\/\*!\*\/;$/d;"
                        r"/^\/\*!100001 SET @@SESSION\.(SERVER_ID|GTID_DOMAIN_ID)=@@GLOBAL\.(SERVER_ID|GTID_DOMAIN_ID) \*\/;$/d")


def post(database: str, n: int) -> str:
    return (f"INSERT INTO {database}.wp_posts (post_title, post_content, post_excerpt, to_ping, pinged, "
            f"post_content_filtered) VALUES ('order {n}', '{'lorem ipsum ' * 40}', '', '', '', ''); "
            f"UPDATE {database}.wp_options SET option_value = '{n}' WHERE option_name = 'blogname'")


class Writer(threading.Thread):
    """Commits one write every `pause` seconds (0: as fast as it can); records each one's latency."""

    def __init__(self, db: MariaDB, database: str, pause: float):
        super().__init__(daemon=True)
        self.db, self.database, self.pause = db, database, pause
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            started = time.monotonic()
            self.db.query(post(self.database, n))
            self.latencies.append(time.monotonic() - started)
            n += 1
            self.stop.wait(self.pause)


class Bench:
    def __init__(self, cluster, workdir: Path):
        self.cluster, self.workdir = cluster, workdir
        self.fingerprint = make_gpg_key(workdir / "gnupg")
        self.gnupg = str(workdir / "gnupg")
        self.encrypt = GPGResource(recipient=self.fingerprint, home=self.gnupg).encrypt_argv()

    def client(self, i: int) -> MariaDB:
        return MariaDB(LocalRunner(), "127.0.0.1", self.cluster.ports[i], "root", None)

    def node(self, i: int = 0) -> Node:
        return Node(self.cluster.nodes[i], "root", None)

    def archive(self, store: LocalStore):
        node = self.node(0)
        return archive_binlogs(node, node.status(), self.client(0), store, self.encrypt, self.fingerprint)

    def site(self, label: str, size: DemoSize) -> Site:
        database = f"wp_pitr_{label}"
        create_site_database(self.client(0), database, f"{label}.pitr.test", size, seed=1)
        return Site(name=f"{label}.pitr.test", database=database, content_path=f"/srv/sites/{label}/wp-content")


def rpo(bench: Bench, every: float, minutes: float) -> dict:
    site = bench.site("rpo", DemoSize(posts=50, uploads=0))
    store = LocalStore(bench.workdir / "rpo")
    bench.archive(store)  # everything before: the archive starts here
    stored_before = sum(p.stat().st_size for p in (bench.workdir / "rpo").rglob("*") if p.is_file())
    writer = Writer(bench.client(1), site.database, 0.2)
    writer.start()
    ages, runs, ends = [], [], time.monotonic() + minutes * 60
    next_run = time.monotonic()
    reach = read_archive(store, ends_only=True).reach
    while time.monotonic() < ends:
        if time.monotonic() >= next_run:
            started = time.monotonic()
            reach = bench.archive(store).reach or reach
            runs.append(time.monotonic() - started)
            next_run = started + every
        ages.append((datetime.now(timezone.utc) - reach).total_seconds())
        time.sleep(1)
    writer.stop.set()
    writer.join()
    stored = sum(p.stat().st_size for p in (bench.workdir / "rpo").rglob("*") if p.is_file()) - stored_before
    writes = len(writer.latencies)
    return {"every_seconds": every, "minutes": minutes, "runs": len(runs), "run_seconds_median": statistics.median(runs),
            "run_seconds_worst": max(runs), "rpo_seconds_median": statistics.median(ages), "rpo_seconds_worst": max(ages),
            "writes": writes, "archive_bytes": stored, "archive_bytes_per_1000_writes": round(stored / writes * 1000),
            "rpo_seconds_worst_at_300s_runs": round(300 + max(runs), 1)}


def cost(bench: Bench, logs: int, writes_per_log: int, runs: int) -> dict:
    """`logs` closed logs of `writes_per_log` writes, archived by wpfarm and, alternately, copied by
    mariadb-binlog --raw alone. The logs close a second before either starts, as they do 5 minutes
    apart on a farm (a FLUSH right after a burst waits for InnoDB's once-a-second log flush of the
    test cluster's innodb_flush_log_at_trx_commit=2)."""
    site = bench.site(f"cost{writes_per_log}", DemoSize(posts=10, uploads=0))
    db = bench.client(0)
    wpfarm, bare, chain = [], [], []
    for run in range(runs):
        store = LocalStore(bench.workdir / f"cost-{writes_per_log}-{run}")
        bench.archive(store)  # the store's first run takes every older log; the measured run takes the new ones
        for _ in range(logs):
            load = db.load(site.database)
            for n in range(writes_per_log):
                load.write((post(site.database, n) + ";\n").encode())
            assert load.wait() == 0
            db.query("FLUSH BINARY LOGS")
        time.sleep(1.5)
        names = [row[0] for row in bench.node(0).rows("SHOW BINARY LOGS")][-logs - 1:-1]
        folder = tempfile.mkdtemp(dir=bench.workdir)
        started = time.monotonic()
        subprocess.run(["mariadb-binlog", "--read-from-remote-server", "--raw", "-h127.0.0.1",
                        f"-P{bench.cluster.ports[0]}", "-uroot", f"--result-file={folder}/", *names], check=True)
        bare.append(time.monotonic() - started)
        started = time.monotonic()  # the same copy, then what the brief asks of every stored log
        for path in sorted(Path(folder).iterdir()):
            with open(path.with_suffix(".zst.gpg"), "wb") as out:
                zstd = subprocess.Popen(["zstd", "-3", "-q", "-c", str(path)], stdout=subprocess.PIPE)
                subprocess.run(bench.encrypt, stdin=zstd.stdout, stdout=out, check=True)
                assert zstd.wait() == 0
        chain.append(bare[-1] + time.monotonic() - started)
        started = time.monotonic()
        archived = bench.archive(store).archived
        wpfarm.append(time.monotonic() - started)
        assert len(archived) >= logs, (len(archived), logs)
    size = sum(p.stat().st_size for p in Path(folder).iterdir() if not p.name.endswith(".gpg"))
    return {"logs": logs, "log_bytes": size, "wpfarm_seconds": round(statistics.median(wpfarm), 3),
            "bare_seconds": round(statistics.median(bare), 3), "bare_chain_seconds": round(statistics.median(chain), 3),
            "ratio": round(statistics.median(wpfarm) / statistics.median(bare), 2),
            "ratio_to_chain": round(statistics.median(wpfarm) / statistics.median(chain), 2)}


def replay(bench: Bench, writes: int, runs: int) -> dict:
    site = bench.site("replay", DemoSize(posts=200, uploads=0))
    db = bench.client(0)
    store = LocalStore(bench.workdir / "replay")
    node = bench.node(0)
    dump = back_up_database(site, db, store, bench.encrypt, bench.fingerprint, server=node.status())
    load = db.load(site.database)
    for n in range(writes):
        load.write((post(site.database, n) + ";\n").encode())
    assert load.wait() == 0
    time.sleep(1.1)
    t = datetime.now(timezone.utc)
    time.sleep(1.1)
    bench.archive(store)
    wanted = db.checksums(site.database)
    wpfarm, bare = [], []
    plain = bench.workdir / "plain"
    plain.mkdir(exist_ok=True)
    start = str(parse_position(dump.manifest.gtid)[dump.manifest.gtid_domain])
    pieces = [p for p in read_archive(store).pieces if p.end_seq > seq_in(parse_position(dump.manifest.gtid),
                                                                         dump.manifest.gtid_domain)]
    for n, piece in enumerate(pieces):  # the bare chain reads the same logs, decrypted beforehand
        with open(plain / f"{n:04d}.binlog", "wb") as out:
            gpg = subprocess.Popen(decrypt_argv(bench.gnupg), stdin=open(store._path(piece.object_key), "rb"),
                                   stdout=subprocess.PIPE)
            subprocess.run(["zstd", "-d", "-q", "-c"], stdin=gpg.stdout, stdout=out, check=True)
            gpg.wait()
    for run in range(runs):
        scratch = f"wp_pitr_replay_{run}"
        db.drop_database(scratch)
        started = time.monotonic()
        restored = restore_to_time(site, store, db, bench.gnupg, t, to_database=scratch)
        wpfarm.append(time.monotonic() - started)
        assert db.checksums(scratch) == wanted
        db.drop_database(scratch)
        db.create_database(scratch)  # bare: the same dump, then the logs
        started = time.monotonic()
        gpg = subprocess.Popen(decrypt_argv(bench.gnupg), stdin=open(store._path(dump.key.data_key), "rb"),
                               stdout=subprocess.PIPE)
        zstd = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=gpg.stdout, stdout=subprocess.PIPE)
        subprocess.run(["mariadb", "-h127.0.0.1", f"-P{bench.cluster.ports[0]}", "-uroot", scratch],
                       stdin=zstd.stdout, check=True)
        dumped = time.monotonic()
        binlog = subprocess.Popen(["mariadb-binlog", f"--start-position={start}", f"--database={site.database}",
                                   f"--rewrite-db={site.database}->{scratch}", *sorted(map(str, plain.iterdir()))],
                                  stdout=subprocess.PIPE, env={**os.environ, "TZ": "UTC"})
        strip = subprocess.Popen(["sed", "-E", STRIP_ORIGINAL_GTIDS], stdin=binlog.stdout, stdout=subprocess.PIPE)
        subprocess.run(["mariadb", "-h127.0.0.1", f"-P{bench.cluster.ports[0]}", "-uroot", scratch],
                       stdin=strip.stdout, check=True)
        bare.append((time.monotonic() - started, time.monotonic() - dumped))
        assert db.checksums(scratch) == wanted
        db.drop_database(scratch)
    whole = statistics.median(s for s, _ in bare)
    logs_only = statistics.median(s for _, s in bare)
    return {"writes": writes, "transactions_replayed": restored["transactions_replayed"],
            "binlog_bytes": restored["binlog_bytes"], "wpfarm_seconds": statistics.median(wpfarm),
            "bare_seconds": whole, "bare_replay_seconds": logs_only,
            "ratio": round(statistics.median(wpfarm) / whole, 2)}


def dump_under_load(bench: Bench, megabytes: int) -> dict:
    size = DemoSize(posts=max(100, megabytes * 1000 // 2 // 2), post_words=300, uploads=0)  # ~2 KB of text a post
    site = bench.site("dump", size)
    log = Path("/var/tmp") / f"wpfarm-bench-general-{os.getpid()}.log"  # a folder the server (user mysql) can write
    bench.cluster.sql(0, f"SET GLOBAL general_log_file = '{log}'; SET GLOBAL general_log = ON")
    # The site's load (one big transaction) applied on every node first: its apply on node 3 would
    # stall the writer there, whatever the dump does.
    deadline = time.monotonic() + 900
    while len({bench.cluster.status(i).get("wsrep_last_committed") for i in range(3)}) > 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not apply the site's load within 15 minutes")
        time.sleep(0.5)
    writer = Writer(bench.client(2), site.database, 0.05)
    writer.start()
    time.sleep(2)
    store = LocalStore(bench.workdir / "dump")
    node = bench.node(0)
    node.rows("FLUSH STATUS")  # wsrep_flow_control_paused from here
    before = len(writer.latencies)
    started = time.monotonic()
    backup = back_up_database(site, bench.client(0), store, bench.encrypt, bench.fingerprint, server=node.status())
    seconds = time.monotonic() - started
    after = len(writer.latencies)
    paused = float(dict(node.rows("SHOW GLOBAL STATUS LIKE 'wsrep_flow_control_paused'"))["wsrep_flow_control_paused"])
    writer.stop.set()
    writer.join()
    during = writer.latencies[before:after + 1]  # and the one in flight as the dump ended
    bench.cluster.sql(0, "SET GLOBAL general_log = OFF")
    general = log.read_text(errors="replace").upper()
    log.unlink()
    return {"dump_bytes": backup.manifest.plaintext_bytes, "seconds": round(seconds, 1),
            "ftwrl_in_general_log": "WITH READ LOCK" in general, "consistent_snapshot": "CONSISTENT SNAPSHOT" in general,
            "flow_control_paused": paused, "writes_during": len(during),
            "slowest_write_ms": round(max(during) * 1000), "median_write_ms": round(statistics.median(during) * 1000),
            "gtid": backup.manifest.gtid}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=float, default=30, help="seconds between archive runs (the farm: 300)")
    p.add_argument("--minutes", type=float, default=3, help="how long the RPO run lasts (the farm's hour: 60)")
    p.add_argument("--logs", type=int, default=5, help="small logs (400 writes, ~0.7 MB each) in one archive run")
    p.add_argument("--big-log-writes", type=int, default=15000, help="writes in the one big log of the second run")
    p.add_argument("--writes", type=int, default=20000, help="transactions replayed (12 h of a busy site)")
    p.add_argument("--dump-mb", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", action="append", choices=["cost", "replay", "dump", "rpo"], help="run only these parts")
    args = p.parse_args()
    results = {}
    with galera_cluster() as cluster, tempfile.TemporaryDirectory(prefix="wpfarm-pitr-bench-") as work:
        bench = Bench(cluster, Path(work))
        phases = {"cost": lambda: [cost(bench, args.logs, 400, args.runs), cost(bench, 1, args.big_log_writes, args.runs)],
                  "replay": lambda: replay(bench, args.writes, args.runs),
                  "dump": lambda: dump_under_load(bench, args.dump_mb),
                  "rpo": lambda: rpo(bench, args.every, args.minutes)}
        for phase in args.only or list(phases):
            results[phase] = phases[phase]()
            print(json.dumps({phase: results[phase]}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
