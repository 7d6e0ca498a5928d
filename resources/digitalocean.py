"""The DigitalOcean API (python-digitalocean). The endpoint comes from $DIGITALOCEAN_END_POINT
(default the real API); tests point it at their emulator of the v2 endpoints used here."""

from __future__ import annotations

import dagster as dg
import digitalocean
import requests

from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.topology import Droplet, DropletSpec


class DigitalOceanError(WpfarmError):
    """The API refused or could not be reached; the message says which call and why."""


class DigitalOceanResource(dg.ConfigurableResource):
    """The farm's droplets: those tagged `tag` (the topology's project). No token: not checked."""

    token: str | None = None
    tag: str = "wpfarm"

    def _call(self, what: str, call):
        try:
            return call()
        except (digitalocean.Error, requests.RequestException, KeyError, ValueError) as exc:
            raise DigitalOceanError(f"{what} failed: {exc}") from None

    def create_droplet(self, spec: DropletSpec) -> int:
        droplet = digitalocean.Droplet(token=self.token, name=spec.name, size_slug=spec.size, region=spec.region,
                                       image=spec.image, tags=list(spec.tags), ssh_keys=list(spec.ssh_keys),
                                       user_data=spec.user_data, monitoring=True, private_networking=True)
        self._call(f"creating droplet {spec.name}", droplet.create)
        return droplet.id

    def destroy_droplet(self, droplet: Droplet) -> None:
        self._call(f"destroying droplet {droplet.name}",
                   lambda: digitalocean.Droplet(token=self.token, id=droplet.id).destroy())

    def droplets(self) -> list[Droplet]:
        found = self._call(f"listing droplets tagged {self.tag!r}",
                           lambda: digitalocean.Manager(token=self.token).get_all_droplets(tag_name=self.tag))
        return [Droplet(d.id, d.name, d.size_slug, d.region["slug"], d.status, tuple(d.tags), d.ip_address)
                for d in found]
