"""An S3 outage fails a farm's backups within minutes, every site naming the cause, and the next
run after it completes. The outage: an endpoint that accepts connections and never answers."""

import socket
import threading
import time

import dagster as dg
import yaml

from resources.object_store import open_store
from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.backups.verify import listed_snapshots
from wpfarm_assets.cli import main
from wpfarm_assets.demo import DemoSize

STALL = 5


class Blackhole:
    """A TCP server that accepts every connection and never sends a byte."""

    def __init__(self):
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(256)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self._held.append(self._server.accept()[0])
            except OSError:
                return

    def close(self):
        self._server.close()
        for conn in self._held:
            conn.close()


def test_a_blackholed_s3_fails_every_site_within_minutes_and_the_next_run_completes(s3, make_farm, dagster_home,
                                                                                    capsys):
    bucket = s3.new_bucket()
    # The healthy runs keep the default stall timeout: a first restic init (key derivation, no output) of
    # 10 sites on 2 loaded cores can be silent for longer than the outage run's 5 s.
    farm = make_farm(10, target=f"s3://{bucket}/farm", s3_endpoint_url=s3.endpoint,  # 2.5 steps of parallel sites
                     size=DemoSize(posts=2, post_words=20, uploads=1, upload_bytes=512))
    assert main(["backup"]) == 0  # the partitions and site records exist: the outage hits the runs themselves
    config = yaml.safe_load(farm.config_path.read_text())
    blackhole = Blackhole()
    try:
        farm.config_path.write_text(yaml.safe_dump({**config, "backup": {**config["backup"], "stall_timeout": STALL,
                                                                         "s3_endpoint_url": blackhole.url}}))
        capsys.readouterr()
        started = time.monotonic()
        assert main(["backup"]) == 1
        took = time.monotonic() - started
    finally:
        blackhole.close()
    err = capsys.readouterr().err
    print(f"blackholed S3: the 10-site run failed in {took:.1f} s (stall_timeout {STALL} s)")
    assert took < STALL + 60, f"the outage took {took:.0f} s to fail the run"
    for site in farm.sites:
        assert f"site {site['name']}: database backup failed" in err and f"site {site['name']}: files backup failed" in err
    assert "timeout" in err.lower() or "did not answer" in err

    farm.config_path.write_text(yaml.safe_dump(config))
    store = open_store(f"s3://{bucket}/farm", s3.endpoint)
    for site in farm.sites:  # nothing of the failed run looks like a backup; the first run's are whole
        assert [len(list_backups(store, site["name"], kind)) for kind in ("db", "files")] == [1, 1]
        assert len(listed_snapshots(store, site["name"])) == 1
    assert main(["backup"]) == 0
    failed = dg.DagsterInstance.get().get_runs(filters=dg.RunsFilter(job_name="back_up_sites",
                                                                     statuses=[dg.DagsterRunStatus.FAILURE]))
    assert len(failed) == 1


class Trickle:
    """A TCP server that reads a request, then answers it one byte every 0.2 s, without end: the
    socket's read timeout never fires."""

    def __init__(self):
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn = self._server.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket):
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000000\r\n\r\n"
        with conn:
            conn.recv(65536)
            i = 0
            while not self._closed.wait(0.2):
                try:
                    conn.sendall(answer[i:i + 1] if i < len(answer) else b"<")
                except OSError:
                    return
                i += 1

    def close(self):
        self._closed.set()
        self._server.close()


def _within(seconds: float, action) -> tuple[float, BaseException | None]:
    """Run `action` in a thread; the time it took and what it raised. A thread still running after
    `seconds` fails the test (instead of hanging it)."""
    outcome: list = [None]

    def run():
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - examined by the test
            outcome[0] = exc
    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return time.monotonic() - started, outcome[0]


def test_a_trickling_s3_fails_each_request_at_its_deadline(tmp_path):
    """Headers and bodies arrive a byte at a time: every kind of request ends at the store's deadline
    with a clear error; so do restic's commands, at the stall timeout."""
    from resources.object_store import UNREACHABLE_FOR, StoreError, _unreachable
    from resources.restic import Repository, ResticError, repository_url
    from resources.ssh import LocalRunner

    trickle = Trickle()
    deadline = 3
    try:
        store = open_store("s3://bucket/farm", trickle.url, access_key_id="k", secret_access_key="s", timeout=2,
                           deadline=deadline)
        actions = {
            "put": lambda: store.put_bytes("sites/a/db/x.json", b"{}"),
            "get": lambda: store.get_bytes("sites/a/db/x.json"),
            "list": lambda: list(store.list("sites/")),
            "uploads": lambda: store.unfinished_uploads("sites/"),
        }
        for name, action in actions.items():
            _unreachable.clear()  # each request on its own, not failed fast by the one before
            took, error = _within(deadline + 20, action)
            assert isinstance(error, StoreError), (name, error)
            assert "did not finish within 3 s" in str(error), (name, error)
            assert took < deadline + 5, (name, took)
        assert UNREACHABLE_FOR > 0 and _unreachable  # the next site of the run fails at once
        took, error = _within(5, actions["get"])
        assert isinstance(error, StoreError) and took < 1

        repository = Repository(LocalRunner(), repository_url("s3://bucket/farm", trickle.url, "sites/a/restic/"),
                                "password", access_key_id="k", secret_access_key="s", stall_timeout=deadline)
        took, error = _within(deadline + 30, repository.snapshots)
        assert isinstance(error, ResticError) and "made no progress for 3 s" in str(error), error
    finally:
        trickle.close()
        _unreachable.clear()
