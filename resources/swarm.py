"""Docker Swarm through the Docker Engine API (docker SDK) of a manager node."""

from __future__ import annotations

import dagster as dg
import docker
import docker.errors
import requests

from wpfarm_assets.topology import Node


class SwarmError(RuntimeError):
    """The Docker API could not be reached or refused; the message says where and why."""


class SwarmResource(dg.ConfigurableResource):
    """A manager's Docker API (unix://, tcp:// or ssh:// URL). No docker_host: Swarm is not watched."""

    docker_host: str | None = None
    timeout_seconds: int = 15

    def client(self) -> docker.DockerClient:
        if not self.docker_host:
            raise SwarmError("no Swarm configured (swarm.docker_host)")
        return docker.DockerClient(base_url=self.docker_host, version="auto", timeout=self.timeout_seconds)

    def nodes(self) -> list[Node]:
        try:
            client = self.client()
            try:
                return [node_of(n.attrs) for n in client.nodes.list()]
            finally:
                client.close()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SwarmError(f"Docker API at {self.docker_host}: {exc}") from None


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
