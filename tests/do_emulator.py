"""An emulator of the DigitalOcean API v2 endpoints wpfarm calls, on loopback, for the tests.

Only the HTTP boundary is emulated: python-digitalocean talks to it through $DIGITALOCEAN_END_POINT
exactly as to the real API (bearer token, JSON bodies, paging with links.pages.next, 202 on create,
204 on delete). State is an in-memory account that the tests can inspect.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import threading
import urllib.parse
from datetime import datetime, timezone


class DigitalOceanEmulator:
    def __init__(self, token: str = "test-token"):
        self.token = token
        self.droplets: dict[int, dict] = {}
        self.ssh_keys = [{"id": 512190, "name": "operator", "fingerprint": "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa",
                          "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA operator"}]
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call, for assertions
        self._ids = itertools.count(3164444)
        self._actions = itertools.count(36804636)
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v2/"

    def start(self) -> DigitalOceanEmulator:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_droplet(self, name: str, size: str, region: str, tags: list[str], image: str = "docker-20-04",
                    ip: str | None = None, **fields) -> dict:
        with self._lock:
            droplet_id = next(self._ids)
            droplet = {
                "id": droplet_id, "name": name, "memory": 0, "vcpus": 0, "disk": 0, "locked": False,
                "status": "active", "kernel": None, "created_at": datetime.now(timezone.utc).isoformat(),
                "features": [], "backup_ids": [], "snapshot_ids": [], "volume_ids": [],
                "image": {"slug": image}, "size": {"slug": size}, "size_slug": size,
                "region": {"slug": region, "name": region},
                "networks": {"v4": [{"ip_address": ip or f"10.{droplet_id % 250}.0.{droplet_id % 200 + 2}",
                                     "type": "public"}], "v6": []},
                "tags": list(tags), **fields,
            }
            self.droplets[droplet_id] = droplet
            return droplet

    # -- HTTP ------------------------------------------------------------------------------------

    def _handler(self):
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict | None = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                url = urllib.parse.urlsplit(self.path)
                emulator.requests.append((method, url.path))
                if self.headers.get("Authorization") != f"Bearer {emulator.token}":
                    return self._reply(401, {"id": "unauthorized", "message": "Unable to authenticate you"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                if method == "GET":  # python-digitalocean sends GET parameters in the query
                    body = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                path = url.path.rstrip("/")
                one = re.fullmatch(r"/v2/droplets/(\d+)", path)
                if path == "/v2/droplets" and method == "GET":
                    return self._list(body)
                if path == "/v2/droplets" and method == "POST":
                    return self._create(body)
                if path == "/v2/account/keys" and method == "GET":
                    return self._reply(200, {"ssh_keys": emulator.ssh_keys, "links": {}, "meta": {"total": len(emulator.ssh_keys)}})
                if one and int(one[1]) in emulator.droplets:
                    if method == "GET":
                        return self._reply(200, {"droplet": emulator.droplets[int(one[1])]})
                    if method == "DELETE":
                        del emulator.droplets[int(one[1])]
                        return self._reply(204)
                return self._reply(404, {"id": "not_found", "message": "The resource you requested could not be found."})

            def _list(self, query: dict):
                tag = query.get("tag_name")
                found = [d for d in emulator.droplets.values() if not tag or tag in d["tags"]]
                per_page, page = int(query.get("per_page", 20)), int(query.get("page", 1))
                links = {}
                if page * per_page < len(found):
                    links["pages"] = {"next": f"{emulator.url}droplets?page={page + 1}&per_page={per_page}"
                                              + (f"&tag_name={tag}" if tag else "")}
                self._reply(200, {"droplets": found[(page - 1) * per_page:page * per_page], "links": links,
                                  "meta": {"total": len(found)}})

            def _create(self, body: dict):
                missing = [k for k in ("name", "region", "size", "image") if not body.get(k)]
                if missing:
                    return self._reply(422, {"id": "unprocessable_entity", "message": f"missing {', '.join(missing)}"})
                droplet = emulator.add_droplet(body["name"], body["size"], body["region"], body.get("tags") or [],
                                               body["image"], status="new", ssh_keys=body.get("ssh_keys") or [],
                                               user_data=body.get("user_data"))
                action = next(emulator._actions)
                self._reply(202, {"droplet": droplet, "links": {"actions": [
                    {"id": action, "rel": "create", "href": f"{emulator.url}actions/{action}"}]}})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

            def log_message(self, *args):
                pass

        return Handler
