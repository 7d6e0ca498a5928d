"""The DigitalOcean API (python-digitalocean). The endpoint comes from $DIGITALOCEAN_END_POINT
(default the real API); tests point it at their emulator of the v2 endpoints used here."""

from __future__ import annotations

import dagster as dg
import digitalocean
import requests

from wpfarm_assets.topology import Droplet


class DigitalOceanError(RuntimeError):
    """The API refused or could not be reached; the message says which call and why."""


class DigitalOceanResource(dg.ConfigurableResource):
    """The farm's droplets: those tagged `tag` (the topology's project). No token: not checked."""

    token: str | None = None
    tag: str = "wpfarm"

    def droplets(self) -> list[Droplet]:
        try:
            found = digitalocean.Manager(token=self.token).get_all_droplets(tag_name=self.tag)
        except (digitalocean.Error, requests.RequestException, KeyError, ValueError) as exc:
            raise DigitalOceanError(f"listing droplets tagged {self.tag!r} failed: {exc}") from None
        return [Droplet(d.id, d.name, d.size_slug, d.region["slug"], d.status, tuple(d.tags), d.ip_address)
                for d in found]
