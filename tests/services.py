"""Real services the tests start on loopback and stop afterwards (the fixtures are in conftest.py):
a Docker engine with a one-node Swarm, glusterd with a volume, Redis master + replica + Sentinel,
Varnish with the farm's VCL, Prometheus. Each waits until it answers before the tests use it.
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
def docker_swarm(hostname: str = "wpt-manager-01"):
    """Debian's dockerd on its own socket and folders (no iptables, no bridge, vfs), in a one-node
    Swarm, under its own host name (a UTS namespace): the name a farm droplet would have."""
    base = scratch_dir("wpfarm-docker-")
    swarm = Swarm(f"unix://{base / 'docker.sock'}")
    argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, "dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
            f"--data-root={base / 'data'}", f"--exec-root={base / 'exec'}", f"--pidfile={base / 'docker.pid'}",
            f"--host={swarm.docker_host}"]

    def answers() -> bool:
        try:
            swarm.docker("info", "--format", "{{.ServerVersion}}")
            return True
        except RuntimeError:
            return False

    try:
        with serving(argv, None, base / "dockerd.log", timeout=90, ready=answers):
            swarm.docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", f"127.0.0.1:{free_port()}")
            try:
                yield swarm
            finally:
                with contextlib.suppress(RuntimeError):
                    swarm.docker("swarm", "leave", "--force")
    finally:
        shutil.rmtree(base, ignore_errors=True)


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
    varnish_health_url: str
    replica: subprocess.Popen


@contextlib.contextmanager
def redis_and_varnish():
    """Redis master + one replica + one Sentinel (quorum 1), and Varnish with configs/varnish/default.vcl
    (its backend pointed at a closed local port: only the health endpoint matters here)."""
    import redis

    base = scratch_dir("wpfarm-cache-")
    master, replica, sentinel, varnish = free_port(), free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(base)]
    (base / "sentinel.conf").write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {base}\nsentinel monitor wpfarm 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds wpfarm 1000\n")
    vcl = (ROOT / "configs/varnish/default.vcl").read_text().replace('.host = "wordpress"', '.host = "127.0.0.1"')
    vcl = vcl.replace('.port = "80"', f'.port = "{free_port()}"')
    (base / "default.vcl").write_text(vcl)
    with contextlib.ExitStack() as stack:
        stack.enter_context(serving(["redis-server", "--port", str(master), *common], master))
        replica_proc = stack.enter_context(serving(
            ["redis-server", "--port", str(replica), *common, "--replicaof", "127.0.0.1", str(master)], replica))
        stack.enter_context(serving(["redis-server", str(base / "sentinel.conf"), "--sentinel"], sentinel))
        stack.enter_context(serving(["varnishd", "-F", "-a", f"127.0.0.1:{varnish}", "-f", str(base / "default.vcl"),
                                     "-n", str(base / "varnish"), "-s", "malloc,16m"], varnish, base / "varnish.log"))
        client = redis.Redis(port=master)
        wait_for(lambda: client.info("replication")["connected_slaves"] == 1, "Redis replication")
        sentinels = redis.Redis(port=sentinel, decode_responses=True)
        wait_for(lambda: int(sentinels.sentinel_master("wpfarm")["num-slaves"]) == 1, "Sentinel discovering the replica")
        yield Cache(f"127.0.0.1:{master}", replica, f"127.0.0.1:{sentinel}",
                    f"http://127.0.0.1:{varnish}/varnish-health", replica_proc)
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
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
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
