"""Docker Swarm through the Docker Engine API (docker SDK) of a manager node; stacks through the
docker CLI (`docker stack deploy`), which the SDK lacks, with the compose file on stdin."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from typing import TypeVar

import dagster as dg
import docker
import docker.errors
import requests

from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.topology import Node

T = TypeVar("T")


class SwarmError(WpfarmError):
    """The Docker API could not be reached or refused; the message says where and why."""


class SwarmResource(dg.ConfigurableResource):
    """A manager's Docker API (unix://, tcp:// or ssh:// URL). No docker_host: Swarm is not watched."""

    docker_host: str | None = None
    timeout_seconds: int = 15

    def client(self) -> docker.DockerClient:
        if not self.docker_host:
            raise SwarmError("no Swarm configured (swarm.docker_host)")
        return docker.DockerClient(base_url=self.docker_host, version="auto", timeout=self.timeout_seconds)

    def _call(self, what: Callable[[docker.DockerClient], T]) -> T:
        try:
            client = self.client()
            try:
                return what(client)
            finally:
                client.close()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SwarmError(f"Docker API at {self.docker_host}: {exc}") from None

    def nodes(self) -> list[Node]:
        return self._call(lambda c: [node_of(n.attrs) for n in c.nodes.list()])

    def swarm_state(self) -> str:
        """inactive | pending | active | error | locked (of the node wpfarm talks to)."""
        return self._call(lambda c: c.info()["Swarm"]["LocalNodeState"])

    def init(self, advertise_addr: str) -> None:
        self._call(lambda c: c.swarm.init(advertise_addr=advertise_addr, listen_addr=f"{advertise_addr}:2377"))

    def join_tokens(self) -> dict[str, str]:
        return self._call(lambda c: {"worker": c.swarm.attrs["JoinTokens"]["Worker"],
                                     "manager": c.swarm.attrs["JoinTokens"]["Manager"]})

    def set_labels(self, node_id: str, labels: dict[str, str]) -> None:
        def update(c: docker.DockerClient) -> None:
            node = c.nodes.get(node_id)
            node.update({**node.attrs["Spec"], "Labels": labels})
        self._call(update)

    def networks(self) -> dict[str, dict]:
        """Swarm-scoped networks by name: driver and options."""
        return self._call(lambda c: {n.name: {"driver": n.attrs["Driver"], "options": n.attrs.get("Options") or {}}
                                     for n in c.networks.list(filters={"scope": "swarm"})})

    def create_overlay_network(self, name: str, encrypted: bool = True) -> None:
        self._call(lambda c: c.networks.create(name, driver="overlay", attachable=True, scope="swarm",
                                               options={"encrypted": ""} if encrypted else {},
                                               labels={"wpfarm.managed": "true"}))

    def secret_versions(self, base: str) -> list[str]:
        """Secrets named <base>-v<N>, oldest first."""
        pattern = re.compile(rf"^{re.escape(base)}-v(\d+)$")
        names = self._call(lambda c: [s.name for s in c.secrets.list(filters={"name": base})])
        return sorted((n for n in names if pattern.match(n)), key=lambda n: int(pattern.match(n)[1]))

    def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> None:
        self._call(lambda c: c.secrets.create(name=name, data=data, labels=labels))

    def remove_secret(self, name: str) -> None:
        self._call(lambda c: [s.remove() for s in c.secrets.list(filters={"name": name}) if s.name == name])

    def prune_secret_versions(self, base: str, keep: str) -> None:
        """Remove the versions before `keep`; one still in use by a task is left for the next run."""
        for name in self.secret_versions(base):
            if name == keep:
                break
            try:
                self.remove_secret(name)
            except SwarmError:
                pass

    def stack_services(self, stack: str) -> dict[str, dict[str, str]]:
        """The stack's services by name, with their labels."""
        return self._call(lambda c: {
            s.name: s.attrs["Spec"].get("Labels") or {}
            for s in c.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})})

    def site_labels(self) -> list[dict[str, str | None]]:
        """Sites announced by services labelled wpfarm.site (with wpfarm.database, wpfarm.content_path)."""
        return self._call(lambda c: [
            {"name": labels["wpfarm.site"], "database": labels.get("wpfarm.database"),
             "content_path": labels.get("wpfarm.content_path"), "service": s.name}
            for s in c.services.list(filters={"label": "wpfarm.site"})
            for labels in [s.attrs["Spec"].get("Labels") or {}]])

    def stack_secrets(self, stack: str) -> set[str]:
        """The secrets the stack's services use."""
        return self._call(lambda c: {
            ref["SecretName"]
            for s in c.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})
            for ref in s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []})

    def deploy_stack(self, stack: str, compose: str) -> None:
        """`docker stack deploy` with the compose file on stdin; images are used as they are on the
        nodes (no registry lookup)."""
        # The compose files interpolate the operator's environment (${DAGSTER_PG_HOST:?...}): docker
        # stack deploy is the one child that needs it whole.
        env = {**os.environ, "DOCKER_HOST": self.docker_host or ""}
        argv = ["docker", "stack", "deploy", "--resolve-image", "never", "--prune", "--compose-file", "-", stack]
        try:
            out = subprocess.run(argv, input=compose, capture_output=True, text=True, env=env, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SwarmError(f"docker stack deploy {stack}: {exc}") from None
        if out.returncode != 0:
            raise SwarmError(f"docker stack deploy {stack} exited {out.returncode}: {out.stderr.strip()[-500:]}")


def node_of(attrs: dict) -> Node:
    spec, description = attrs["Spec"], attrs.get("Description", {})
    return Node(
        id=attrs["ID"],
        hostname=description.get("Hostname", ""),
        role=spec["Role"],
        availability=spec["Availability"],
        state=attrs.get("Status", {}).get("State", "unknown"),
        engine=description.get("Engine", {}).get("EngineVersion", ""),
        labels=tuple(sorted((spec.get("Labels") or {}).items())),
    )
