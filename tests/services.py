"""Real services the tests start on loopback and stop afterwards (the fixtures are in conftest.py):
a Docker engine with a one-node Swarm, glusterd with a volume, Redis master + replica + Sentinel,
Varnish with the farm's VCL, Prometheus, a 3-node MariaDB Galera cluster. Each waits until it answers
before the tests use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(ready, what: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout}s")
        time.sleep(0.2)


def wait_for_child(parent: int, name: str, timeout: float = 60) -> int:
    """The pid of a process called `name` whose parent is `parent`, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    head, tail = f.read().rsplit(")", 1)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            if head.split("(", 1)[1] == name and int(tail.split()[1]) == parent:
                return int(pid)
        time.sleep(0.01)
    raise AssertionError(f"no {name} started by {parent} within {timeout}s")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def serving(argv: list[str], port: int | None, log: Path | None = None, timeout: float = 30, ready=None,
            env: dict | None = None):
    """Run a server until the block ends, once it listens on `port` (loopback) or `ready()` is true."""
    stderr = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        wait_for(ready or (lambda: listening(port)), argv[0], timeout, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scratch_dir(prefix: str) -> Path:
    """A folder other users (varnish, sshd's user) can read; pytest's tmp folders are root-only."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def mariadb_server():
    """A MariaDB server of its own (own data folder and port) that a test may SIGSTOP or kill
    without touching the machine's server. Yields (port, pid)."""
    base = scratch_dir("wpfarm-mariadb-")
    data = base / "data"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True)
    port = free_port()
    argv = ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
            f"--socket={base / 'mysqld.sock'}", f"--pid-file={base / 'mysqld.pid'}", "--user=root",
            "--skip-log-bin", "--innodb-buffer-pool-size=64M"]
    try:
        with serving(argv, port, base / "mariadbd.log") as proc:
            yield port, proc.pid
            os.kill(proc.pid, 18)  # SIGCONT: a test that stopped it must not leave it unable to stop
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class GaleraCluster:
    """Three MariaDB Galera nodes on loopback (see galera_cluster()); node i has SQL port ports[i]."""

    base: Path
    ports: list[int]
    domain_id: int  # the cluster's wsrep_gtid_domain_id; node i's own gtid_domain_id is 11 + i
    procs: list  # the running mariadbd of each node (a Popen), replaced by start()

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def pids(self) -> list[int | None]:
        return [proc.pid if proc and proc.poll() is None else None for proc in self.procs]

    def sql(self, i: int, statement: str, user: str = "root", timeout: float = 60) -> str:
        out = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{self.ports[i]}", f"-u{user}", "-N", "-B", "-e", statement],
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"node {i}: {statement}: {out.stderr.strip()}")
        return out.stdout

    def status(self, i: int) -> dict[str, str]:
        """The node's wsrep_* status variables; {} while it does not answer."""
        try:
            rows = self.sql(i, "SHOW GLOBAL STATUS LIKE 'wsrep%'", timeout=10).splitlines()
        except (RuntimeError, subprocess.TimeoutExpired):
            return {}
        return dict(row.split("\t", 1) for row in rows if "\t" in row)

    def synced(self, i: int, size: int = 3) -> bool:
        status = self.status(i)
        return status.get("wsrep_local_state_comment") == "Synced" and status.get("wsrep_cluster_size") == str(size)

    def kill(self, i: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[i].pid, 9)  # mariadbd and any SST script it started
        self.procs[i].wait()

    def start(self, i: int, timeout: float = 120, new_cluster: bool = False) -> None:
        """(Re)start node i; after a crash, from the position InnoDB recovers (so it can rejoin by IST)."""
        argv = ["/usr/sbin/mariadbd", f"--defaults-file={self.base / f'node{i}/my.cnf'}", "--user=mysql"]
        if new_cluster:
            argv.append("--wsrep-new-cluster")
        elif (self.base / f"node{i}/data/ibdata1").exists():
            # (the recovery run itself leaves a binlog file holding only a Stop event)
            out = subprocess.run([*argv, "--wsrep-recover"], capture_output=True, text=True, timeout=60)
            recovered = [line.split("Recovered position: ")[1] for line in out.stderr.splitlines()
                         if "Recovered position: " in line]
            argv += [f"--wsrep-start-position={recovered[-1].strip()}"] if recovered else []
        with open(self.base / f"node{i}/mariadbd.log", "ab") as log:
            self.procs[i] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        wait_for(lambda: self.synced(i, len([p for p in self.pids() if p])), f"Galera node {i} Synced", timeout,
                 self.procs[i])


@contextlib.contextmanager
def galera_cluster(domain_id: int = 100):
    """A 3-node MariaDB Galera cluster (rsync SST, binlogs on, wsrep_gtid_mode=ON) on loopback; ready when
    every node is Synced in a cluster of 3 (about 12 s here). root has no password over TCP."""
    base = scratch_dir("wpfarm-galera-")
    ports = [free_port() for _ in range(3)]
    gcomm = [free_port() for _ in range(3)]
    cluster = GaleraCluster(base, ports, domain_id, [None] * 3)
    try:
        for i in range(3):
            node = base / f"node{i}"
            (node / "data").mkdir(parents=True)
            provider = (f"base_port={gcomm[i]}; gmcast.listen_addr=tcp://127.0.0.1:{gcomm[i]}; "
                        f"ist.recv_addr=127.0.0.1:{free_port()}; gcache.size=32M; evs.keepalive_period=PT0.5S; "
                        "evs.inactive_check_period=PT0.5S; evs.suspect_timeout=PT2S; evs.inactive_timeout=PT4S; "
                        "evs.install_timeout=PT4S; pc.announce_timeout=PT1S")
            (node / "my.cnf").write_text(f"""[mysqld]
datadir={node / 'data'}
port={ports[i]}
bind-address=127.0.0.1
socket={node / 'mysqld.sock'}
pid-file={node / 'mysqld.pid'}
skip-name-resolve
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
innodb_autoinc_lock_mode=2
binlog_format=ROW
log_bin=binlog
log_slave_updates=ON
server_id={i + 1}
gtid_domain_id={11 + i}
wsrep_on=ON
wsrep_provider=/usr/lib/galera/libgalera_smm.so
wsrep_cluster_name=wpfarm-test
wsrep_cluster_address=gcomm://{','.join(f'127.0.0.1:{p}' for p in gcomm)}
wsrep_provider_options="{provider}"
wsrep_node_name=node{i}
wsrep_node_address=127.0.0.1
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:{free_port()}
wsrep_gtid_mode=ON
wsrep_gtid_domain_id={domain_id}
""")
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={base / 'node0/data'}", "--user=mysql",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)
        subprocess.run(["chown", "-R", "mysql:mysql", str(base)], check=True)
        cluster.start(0, new_cluster=True)
        for i in (1, 2):
            cluster.start(i)  # no data yet: joins by a full rsync SST from a running node
        wait_for(lambda: all(cluster.synced(i) for i in range(3)), "Galera cluster of 3 Synced", 60)
        yield cluster
    finally:
        for proc in filter(None, cluster.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class SSHService:
    port: int
    key_file: str
    known_hosts: str
    user: str
    host: str = "127.0.0.1"

    def config(self) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user,
                "key_file": self.key_file, "known_hosts": self.known_hosts}


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    """argv run in a network namespace made with `ip netns add` (nsenter keeps /sys and cgroups,
    which `ip netns exec` would remount)."""
    return ["nsenter", f"--net=/var/run/netns/{netns}", *argv] if netns else argv


@contextlib.contextmanager
def ssh_server(address: str = "127.0.0.1", port: int | None = None, netns: str | None = None,
               env: dict[str, str] | None = None):
    """Debian's OpenSSH server, key auth only, its host key pinned in a known_hosts file; `env` is
    set in every session (SetEnv). Its folder is readable by other users: sshd reads authorized_keys
    as the user logging in."""
    base = scratch_dir("wpfarm-sshd-")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "client_key")], check=True)
    shutil.copy(base / "client_key.pub", base / "authorized_keys")
    os.chmod(base / "authorized_keys", 0o644)
    port = port or free_port()
    host_pub = (base / "host_key.pub").read_text().split()
    where = address if port == 22 else f"[{address}]:{port}"
    (base / "known_hosts").write_text(f"{where} {host_pub[0]} {host_pub[1]}\n")
    set_env = "".join(f"SetEnv {k}={v}\n" for k, v in (env or {}).items())
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {base / 'host_key'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPidFile {base / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n{set_env}"
    )
    os.makedirs("/run/sshd", exist_ok=True)

    def listening_there() -> bool:
        with socket.socket() as s:
            return s.connect_ex((address, port)) == 0

    try:
        argv = in_netns(netns, ["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")])
        with serving(argv, None, base / "sshd.log", ready=listening_there):
            yield SSHService(port, str(base / "client_key"), str(base / "known_hosts"), os.environ.get("USER", "root"),
                             address)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Swarm:
    docker_host: str

    def docker(self, *args: str) -> str:
        out = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": self.docker_host},
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def node_id(self) -> str:
        return self.docker("info", "--format", "{{.Swarm.NodeID}}")

    def import_image(self, tag: str) -> str:
        """An image made here with `docker import` of a busybox rootfs (no registry on these machines)."""
        with tempfile.TemporaryDirectory() as root:
            (Path(root) / "bin").mkdir()
            shutil.copy(shutil.which("busybox"), Path(root) / "bin" / "busybox")
            os.symlink("busybox", Path(root) / "bin" / "sh")
            tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True).stdout
        out = subprocess.run(["docker", "import", "--change", 'CMD ["/bin/busybox", "sleep", "3600"]', "-", tag],
                             input=tar, capture_output=True, env={**os.environ, "DOCKER_HOST": self.docker_host})
        if out.returncode != 0:
            raise RuntimeError(f"docker import: {out.stderr.decode().strip()}")
        return tag

    def set_labels(self, **labels: str) -> None:
        """Make the node's labels exactly `labels` (tests share one Swarm)."""
        node = self.node_id()
        old = json.loads(self.docker("node", "inspect", "--format", "{{json .Spec.Labels}}", node)) or {}
        removes = [arg for key in old if key not in labels for arg in ("--label-rm", key)]
        adds = [arg for key, value in labels.items() for arg in ("--label-add", f"{key}={value}")]
        if removes or adds:
            self.docker("node", "update", *removes, *adds, node)


@contextlib.contextmanager
def docker_engine(hostname: str, netns: str | None = None):
    """Debian's dockerd on its own socket and folders (no iptables, no bridge, vfs), under its own
    host name (a UTS namespace: the name a farm droplet would have), optionally in a network namespace."""
    base = scratch_dir("wpfarm-docker-")
    engine = Swarm(f"unix://{base / 'docker.sock'}")
    argv = in_netns(netns, ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, "dockerd",
                            "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
                            f"--data-root={base / 'data'}", f"--exec-root={base / 'exec'}",
                            f"--pidfile={base / 'docker.pid'}", f"--host={engine.docker_host}"])

    def answers() -> bool:
        try:
            engine.docker("info", "--format", "{{.ServerVersion}}")
            return True
        except RuntimeError:
            return False

    try:
        with serving(argv, None, base / "dockerd.log", timeout=90, ready=answers) as proc:
            try:
                yield engine, proc
            finally:
                with contextlib.suppress(RuntimeError):
                    engine.docker("swarm", "leave", "--force")
    finally:
        # An engine that was killed leaves its network namespaces mounted under exec-root; one in
        # this host's namespace leaves the docker_gwbridge it made for the Swarm.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(base) in line]
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        if netns is None:
            subprocess.run(["ip", "link", "del", "docker_gwbridge"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def docker_swarm(hostname: str = "wpt-manager-01"):
    """A one-node Swarm on loopback."""
    with docker_engine(hostname) as (swarm, _):
        swarm.docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", f"127.0.0.1:{free_port()}")
        yield swarm


@dataclass(frozen=True)
class TwoHosts:
    """Two farm nodes on one bridge, each in its own network namespace with its own Docker engine;
    neither in a Swarm yet. The second also runs sshd on port 22 (as a new droplet would), its
    sessions pointed at its own engine."""

    manager: Swarm
    manager_addr: str
    worker: Swarm
    worker_addr: str
    worker_engine: subprocess.Popen
    worker_ssh: SSHService


@contextlib.contextmanager
def two_hosts(manager_name: str, worker_name: str):
    tag = uuid.uuid4().hex[:6]
    bridge, subnet = f"wbr{tag}", f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    namespaces = {"m": (f"wpm{tag}", f"{subnet}.2"), "w": (f"wpw{tag}", f"{subnet}.3")}

    def ip(*args: str, netns: str | None = None) -> None:
        subprocess.run(in_netns(netns, ["ip", *args]), check=True, capture_output=True)

    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for key, (netns, address) in namespaces.items():
            ip("netns", "add", netns)
            ip("link", "add", f"v{key}{tag}", "type", "veth", "peer", "name", f"e{key}{tag}")
            ip("link", "set", f"e{key}{tag}", "netns", netns)
            ip("link", "set", f"v{key}{tag}", "master", bridge, "up")
            ip("addr", "add", f"{address}/24", "dev", f"e{key}{tag}", netns=netns)
            ip("link", "set", f"e{key}{tag}", "up", netns=netns)
            ip("link", "set", "lo", "up", netns=netns)
        with docker_engine(manager_name, namespaces["m"][0]) as (manager, _), \
                docker_engine(worker_name, namespaces["w"][0]) as (worker, worker_proc), \
                ssh_server(namespaces["w"][1], 22, namespaces["w"][0], {"DOCKER_HOST": worker.docker_host}) as ssh:
            yield TwoHosts(manager, namespaces["m"][1], worker, namespaces["w"][1], worker_proc, ssh)
    finally:
        for key, (netns, _) in namespaces.items():
            subprocess.run(["ip", "link", "del", f"v{key}{tag}"], capture_output=True)  # and its peer
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def gluster(*args: str) -> str:
    out = subprocess.run(["gluster", "--mode=script", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"gluster {' '.join(args)}: {(out.stderr or out.stdout).strip()}")
    return out.stdout


@dataclass(frozen=True)
class GlusterVolume:
    name: str

    def brick_pids(self) -> list[int]:
        from xml.etree import ElementTree

        root = ElementTree.fromstring(gluster("volume", "status", self.name, "--xml"))
        return [int(n.findtext("pid")) for n in root.iter("node") if (n.findtext("path") or "").startswith("/")]


@contextlib.contextmanager
def gluster_volume():
    """glusterd (started here unless it runs) and a one-brick volume on this host, deleted after."""
    base = scratch_dir("wpfarm-gluster-")
    name = f"wpfarm-test-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        try:
            gluster("volume", "list")
        except RuntimeError:
            stack.enter_context(serving(["glusterd", "-N", f"--log-file={base / 'glusterd.log'}"], 24007))
        gluster("volume", "create", name, f"{socket.gethostname()}:{base / 'brick'}", "force")
        gluster("volume", "start", name)
        wait_for(lambda: "<status>1</status>" in gluster("volume", "status", name, "--xml"), "the brick online")
        try:
            yield GlusterVolume(name)
        finally:
            with contextlib.suppress(RuntimeError):
                gluster("volume", "stop", name, "force")
            with contextlib.suppress(RuntimeError):
                gluster("volume", "delete", name)
    shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Cache:
    master: str  # host:port
    replica_port: int
    sentinel: str
    varnish: str  # http://127.0.0.1:PORT
    varnish_health_url: str
    site: str  # the one site sites.vcl routes, to a local web server that answers "site <name>"
    replica: subprocess.Popen


@contextlib.contextmanager
def redis_and_varnish(site: str = "shop.example.com"):
    """Redis master + one replica + one Sentinel (quorum 1), and Varnish with the farm's own
    configs/varnish/default.vcl, unmodified, and a sites.vcl generated by wpfarm for one site whose
    backend is a small web server here."""
    import http.server
    import threading

    import redis

    from wpfarm_assets.provisioning.plans import sites_vcl

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"site {site}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    base = scratch_dir("wpfarm-cache-")
    master, replica, sentinel, varnish = free_port(), free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(base)]
    (base / "sentinel.conf").write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {base}\nsentinel monitor wpfarm 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds wpfarm 10000\n")  # a busy 2-core machine is not a dead master
    shutil.copy(ROOT / "configs/varnish/default.vcl", base / "default.vcl")
    (base / "sites.vcl").write_text(sites_vcl([(site, "127.0.0.1", web.server_address[1])]))
    with contextlib.ExitStack() as stack:
        stack.callback(web.shutdown)
        stack.enter_context(serving(["redis-server", "--port", str(master), *common], master))
        replica_proc = stack.enter_context(serving(
            ["redis-server", "--port", str(replica), *common, "--replicaof", "127.0.0.1", str(master)], replica))
        stack.enter_context(serving(["redis-server", str(base / "sentinel.conf"), "--sentinel"], sentinel))
        stack.enter_context(serving(["varnishd", "-F", "-a", f"127.0.0.1:{varnish}", "-f", str(base / "default.vcl"),
                                     "-p", f"vcl_path={base}:/usr/share/varnish/vcl", "-n", str(base / "varnish"),
                                     "-s", "malloc,16m"], varnish, base / "varnish.log"))
        client = redis.Redis(port=master)
        wait_for(lambda: client.info("replication")["connected_slaves"] == 1, "Redis replication")
        sentinels = redis.Redis(port=sentinel, decode_responses=True)
        wait_for(lambda: int(sentinels.sentinel_master("wpfarm")["num-slaves"]) == 1, "Sentinel discovering the replica")
        yield Cache(f"127.0.0.1:{master}", replica, f"127.0.0.1:{sentinel}", f"http://127.0.0.1:{varnish}",
                    f"http://127.0.0.1:{varnish}/varnish-health", site, replica_proc)
    shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Prometheus:
    url: str
    dead_target: str  # a scrape target with nothing behind it


@contextlib.contextmanager
def prometheus():
    """Prometheus scraping itself and one address where nothing listens."""
    base = scratch_dir("wpfarm-prometheus-")
    port, dead = free_port(), free_port()
    config = {"global": {"scrape_interval": "2s", "scrape_timeout": "2s"}, "scrape_configs": [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        {"job_name": "gone", "static_configs": [{"targets": [f"127.0.0.1:{dead}"]}]}]}
    (base / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=2) as r:
                targets = json.load(r)["data"]["activeTargets"]
        except OSError:
            return False
        return len(targets) == 2 and all(t["health"] != "unknown" for t in targets)

    with serving(["prometheus", f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}"], port, base / "prometheus.log", ready=scraped):
        yield Prometheus(url, f"127.0.0.1:{dead}")
    shutil.rmtree(base, ignore_errors=True)
