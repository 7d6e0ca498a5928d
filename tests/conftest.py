"""Real services for the tests, started here on free loopback ports and stopped afterwards:
moto_server (S3 over HTTP), an OpenSSH server, a throwaway GnuPG keyring, Alertmanager, Pushgateway,
and (tests/services.py) dockerd in a Swarm, glusterd, Redis + Sentinel, Varnish, Prometheus; the
DigitalOcean API is the one emulated (tests/do_emulator.py). MariaDB is the machine's
own server (scripts/setup makes sure it runs); each test creates and drops its own databases.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml
from do_emulator import DigitalOceanEmulator
from services import (
    SSHService,
    docker_swarm,
    free_port,
    galera_cluster,
    gluster_volume,
    mariadb_server,
    prometheus,
    redis_and_varnish,
    scratch_dir,
    serving,
    ssh_server,
    two_hosts,
)

from resources.mariadb import MariaDB
from resources.ssh import LocalRunner
from wpfarm_assets.demo import DemoSize, create_site_content, create_site_database, make_gpg_key

VENV_BIN = Path(sys.executable).parent


# Tests that start a service of the machine's (a Galera cluster, dockerd and Swarm, glusterd, the
# cache tier, Prometheus, network namespaces) run in one pytest-xdist worker, one after another: two
# workers would start two of them. The rest are spread over the workers (`-n 2 --dist loadgroup`).
MACHINE_SERVICES = {"galera", "swarm", "gluster", "cache", "prometheus_server", "cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        if MACHINE_SERVICES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("machine-services"))


@pytest.fixture(scope="session")
def db() -> MariaDB:
    client = MariaDB(LocalRunner(), "127.0.0.1", 3306, "root", None)
    client.version()  # fails loudly if the server is not running
    return client


@pytest.fixture(scope="session")
def galera():
    """A real 3-node MariaDB Galera cluster (tests/services.py), shared by the session's Galera tests:
    binary logs on every node, one GTID domain for the cluster's writes. A test that stops a node
    starts it again."""
    with galera_cluster() as cluster:
        yield cluster


@dataclass(frozen=True)
class Keyring:
    home: str  # public and secret key (restore side)
    public_home: str  # public key only (what a worker holds)
    fingerprint: str


@pytest.fixture
def scratch_server():
    """A MariaDB server of the test's own (tests/services.py), that it may SIGSTOP: (client, pid)."""
    with mariadb_server() as (port, pid):
        yield MariaDB(LocalRunner(), "127.0.0.1", port, "root", None), pid


@pytest.fixture(scope="session")
def keyring(tmp_path_factory) -> Keyring:
    base = tmp_path_factory.mktemp("gnupg")
    home = base / "full"
    fingerprint = make_gpg_key(home, "wpfarm test key")
    public = base / "public"
    public.mkdir(mode=0o700)
    exported = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--export", fingerprint],
                              capture_output=True, check=True).stdout
    subprocess.run(["gpg", "--batch", "--homedir", str(public), "--import"], input=exported,
                   capture_output=True, check=True)
    return Keyring(str(home), str(public), fingerprint)


@dataclass(frozen=True)
class S3Service:
    endpoint: str

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def new_bucket(self) -> str:
        name = f"wpfarm-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3() -> S3Service:
    port = free_port()
    with serving([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port):
        yield S3Service(f"http://127.0.0.1:{port}")


@pytest.fixture(autouse=True)
def _s3_credentials(monkeypatch):
    # boto3's own credential chain; moto accepts any keys. Never real credentials in tests.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


@pytest.fixture(scope="session")
def sshd() -> SSHService:
    """Debian's OpenSSH server on a loopback port, key auth only, with its host key pinned."""
    with ssh_server() as server:
        yield server


@pytest.fixture(scope="session")
def backup_user() -> str:
    """An unprivileged account for SSH sources: root reads every file, a real backup user does not."""
    name = "wpfarm-test"
    if subprocess.run(["id", name], capture_output=True).returncode != 0:  # (exit 9: another worker made it)
        assert subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name]).returncode in (0, 9)
    subprocess.run(["usermod", "-p", "*", name], check=True)  # no password, but not locked: key login works
    return name


@pytest.fixture
def shared_dir():
    """A folder other users can read (pytest's own tmp folders are root-only)."""
    path = scratch_dir("wpfarm-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Farm:
    """A small farm of demo sites on the real MariaDB, with a farm.yaml written for it."""

    workdir: Path
    config_path: Path
    sites: list[dict]
    keyring: Keyring

    def site_root(self, i: int = 0) -> Path:
        return Path(self.sites[i]["content_path"]).parent


@pytest.fixture
def make_farm(tmp_path, db, keyring, monkeypatch):
    """make_farm(n, target=..., database_ssh=..., storage_ssh=..., size=..., sections={...}) -> Farm;
    drops its databases after. `sections` adds to or overrides farm.yaml's top-level sections."""
    created: list[str] = []

    def make(n: int = 2, *, target: str | None = None, database_ssh: dict | None = None,
             storage_ssh: dict | None = None, size: DemoSize = DemoSize(posts=30, uploads=3),
             content_root: Path | None = None, alerts: dict | None = None, sections: dict | None = None,
             server: MariaDB = db, **backup) -> Farm:
        tag = uuid.uuid4().hex[:8]
        sites = []
        for i in range(n):
            name = f"s{i}-{tag}.test.example"
            database = f"wpt_{tag}_{i}"
            create_site_database(server, database, name, size, seed=i)
            created.append((server, database))
            content = create_site_content((content_root or tmp_path / "sites") / name, name, size, seed=i)
            sites.append({"name": name, "database": database, "content_path": str(content)})
        config = {
            "database": {"host": "127.0.0.1", "port": server.port, "user": "root",
                         **({"ssh": database_ssh} if database_ssh else {})},
            "storage": {"ssh": storage_ssh} if storage_ssh else {},
            "backup": {"target": target or f"file://{tmp_path / 'backups'}",
                       "gpg_recipient": keyring.fingerprint, "gpg_home": keyring.public_home, **backup},
            "alerts": alerts or {},
            "drill": {"scratch_root": str(tmp_path / "drills"), "gnupg_home": keyring.home},
            "sites": sites,
        }
        for section, values in (sections or {}).items():  # topology, swarm, cache, monitoring, storage...
            config[section] = {**config.get(section, {}), **values}
        path = tmp_path / "farm.yaml"
        path.write_text(yaml.safe_dump(config))
        monkeypatch.setenv("WPFARM_CONFIG", str(path))
        monkeypatch.setenv("WPFARM_RESTIC_PASSWORD", f"farm-password-{tag}")
        return Farm(tmp_path, path, sites, keyring)

    yield make
    for server, database in created:
        server.drop_database(database)


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


class Receivers:
    """Stand-ins for Slack and the SMS bridge (HTTP) and SendGrid (SMTP), recording what arrives."""

    def __init__(self):
        import http.server
        import json as _json
        import threading

        from aiosmtpd.controller import Controller

        self.http: dict[str, list[dict]] = {"/slack": [], "/sms": []}
        self.mail: list[str] = []
        received = self.http

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.setdefault(self.path, []).append(_json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        mail = self.mail

        class Mailbox:
            async def handle_DATA(self, server, session, envelope):
                mail.append(envelope.content.decode(errors="replace"))
                return "250 OK"

        self.smtp_port = free_port()
        self._smtp = Controller(Mailbox(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()

    def text(self) -> dict[str, str]:
        import json as _json

        return {"slack": _json.dumps(self.http["/slack"]), "sms": _json.dumps(self.http["/sms"]),
                "email": "\n".join(self.mail)}

    def clear(self):
        for calls in self.http.values():
            calls.clear()
        self.mail.clear()

    def stop(self):
        self._server.shutdown()
        self._smtp.stop()


@pytest.fixture(scope="session")
def receivers():
    r = Receivers()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def alertmanager(receivers, tmp_path_factory) -> str:
    """The real Alertmanager with the project's routing (configs/alertmanager/alertmanager.yml);
    only the receivers' addresses and secrets point at the local stand-ins, and groups flush in 1 s."""
    base = tmp_path_factory.mktemp("alertmanager")
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/alertmanager/alertmanager.yml").read_text())
    (base / "slack_url").write_text(f"http://127.0.0.1:{receivers.http_port}/slack")
    (base / "sendgrid_key").write_text("test-key")
    config["global"].update(smtp_smarthost=f"127.0.0.1:{receivers.smtp_port}", smtp_require_tls=False,
                            smtp_auth_password_file=str(base / "sendgrid_key"))
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(base / "slack_url")
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{receivers.http_port}/sms"
    (base / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = ["prometheus-alertmanager", f"--config.file={base / 'alertmanager.yml'}", f"--storage.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with serving(argv, port, base / "alertmanager.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def pushgateway() -> str:
    port = free_port()
    with serving(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"], port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def swarm():
    with docker_swarm() as running:
        yield running


@pytest.fixture(scope="session")
def gluster():
    with gluster_volume() as volume:
        yield volume


@pytest.fixture(scope="session")
def cache():
    with redis_and_varnish() as running:
        yield running


@pytest.fixture(scope="session")
def prometheus_server():
    with prometheus() as running:
        yield running


@pytest.fixture
def digitalocean(monkeypatch):
    """The DigitalOcean emulator, with python-digitalocean and the resource pointed at it."""
    emulator = DigitalOceanEmulator().start()
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", emulator.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", emulator.token)
    yield emulator
    emulator.stop()


@pytest.fixture
def cluster():
    """Two droplet-like hosts (own network namespaces, Docker engines, the second with sshd), not yet a Swarm."""
    with two_hosts("wpt-manager-01", "wpt-database-01") as hosts:
        yield hosts
