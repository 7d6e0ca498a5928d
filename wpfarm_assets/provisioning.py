"""Building the farm and its sites: plans (desired against actual state) and the steps that apply them.

Every step first plans a list of Changes, which is what a dry run shows; applying a plan twice does
nothing the second time, because the second plan is empty. Nothing is ever destroyed unless asked.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resources.mariadb import MariaDB
from resources.ssh import Runner, run
from resources.swarm import SwarmResource
from wpfarm_assets.config import ProvisioningConfig, Site, TopologyConfig
from wpfarm_assets.topology import Droplet, Node, droplet_specs, tier_of_node

STACK_HASH_LABEL = "wpfarm.stack-sha256"
# What WordPress and its plugins need on their own database, and nothing on any other (in the order
# SHOW GRANTS prints them).
SITE_PRIVILEGES = ("SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, CREATE TEMPORARY TABLES, "
                   "LOCK TABLES, CREATE VIEW, SHOW VIEW, TRIGGER")


@dataclass(frozen=True)
class Change:
    target: str  # droplet, node, network, stack or site
    action: str  # create | destroy | keep | init | join | set-labels | deploy
    detail: str
    payload: object = field(default=None, compare=False, repr=False)

    def row(self) -> dict[str, str]:
        return {"target": self.target, "action": self.action, "detail": self.detail}


# -- the farm -----------------------------------------------------------------------------------


def plan_droplets(topology: TopologyConfig, droplets: list[Droplet], user_data: str | None,
                  destroy_extra: bool = False) -> list[Change]:
    """Create what the topology has and the account lacks; droplets it does not have are destroyed
    only with destroy_extra, else listed as kept. (Size and region differences are the droplets
    asset's to report: resizing is a decision, not a plan step.)"""
    names = {d.name for d in droplets}
    changes = [Change(s.name, "create", f"{s.size} in {s.region} ({s.tier})", s)
               for s in droplet_specs(topology, user_data) if s.name not in names]
    wanted = {s.name for s in droplet_specs(topology)}
    for droplet in sorted(droplets, key=lambda d: d.name):
        if droplet.name not in wanted:
            changes.append(Change(droplet.name, "destroy", "not in the topology", droplet) if destroy_extra
                           else Change(droplet.name, "keep", "not in the topology (destroy_extra not set)"))
    return changes


def plan_swarm_init(state: str, advertise_addr: str | None) -> list[Change]:
    if state == "active":
        return []
    if not advertise_addr:
        raise ValueError("the Swarm is not initialized and swarm.advertise_addr is not set")
    return [Change("swarm", "init", f"advertise {advertise_addr}", advertise_addr)]


def plan_joins(topology: TopologyConfig, droplets: list[Droplet], nodes: list[Node]) -> list[Change]:
    """Droplets of the topology that are not Swarm nodes yet, with the role their tier has (those
    still booting, without an address, wait for the next run)."""
    in_swarm = {n.hostname for n in nodes}
    by_name = {d.name: d for d in droplets}
    changes = []
    for spec in droplet_specs(topology):
        droplet = by_name.get(spec.name)
        if droplet is None or spec.name in in_swarm:
            continue
        if droplet.status != "active" or not droplet.ip:
            changes.append(Change(spec.name, "keep", f"not ready to join yet ({droplet.status}); run again"))
            continue
        role = topology.tiers[spec.tier].role
        changes.append(Change(spec.name, "join", f"as {role} ({droplet.ip})", (droplet, role)))
    return changes


def plan_labels(topology: TopologyConfig, nodes: list[Node]) -> list[Change]:
    """Add or correct the topology's labels on every node whose tier is known; other labels stay."""
    changes = []
    for node in sorted(nodes, key=lambda n: n.hostname):
        tier = tier_of_node(topology, node)
        if tier is None:
            continue
        labels = dict(node.labels)
        wanted = {**labels, **topology.node_labels(tier)}
        if wanted != labels:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()) if labels.get(k) != v)
            changes.append(Change(node.hostname, "set-labels", detail, (node.id, wanted)))
    return changes


def plan_networks(wanted: list[str], existing: dict[str, dict]) -> list[Change]:
    changes = []
    for name in wanted:
        network = existing.get(name)
        if network is None:
            changes.append(Change(name, "create", "overlay, encrypted, attachable"))
        elif network["driver"] != "overlay" or "encrypted" not in network["options"]:
            changes.append(Change(name, "keep", "exists but is not an encrypted overlay: recreate it by hand"))
    return changes


def stamped(compose: dict) -> tuple[str, str]:
    """The compose file with every service labelled with the file's sha256, and that sha256: a stack
    whose services all carry the label of the file at hand needs no deploy."""
    digest = hashlib.sha256(yaml.safe_dump(compose, sort_keys=True).encode()).hexdigest()
    for service in compose.get("services", {}).values():
        service.setdefault("deploy", {}).setdefault("labels", {})[STACK_HASH_LABEL] = digest
    return yaml.safe_dump(compose, sort_keys=False), digest


def plan_stack(stack: str, compose: dict, services: dict[str, dict[str, str]]) -> list[Change]:
    text, digest = stamped(compose)
    wanted = {f"{stack}_{name}" for name in compose.get("services", {})}
    current = {name for name, labels in services.items() if labels.get(STACK_HASH_LABEL) == digest}
    if wanted <= current:
        return []
    return [Change(stack, "deploy", f"{'new' if not services else 'changed'}: {', '.join(sorted(wanted - current))}",
                   text)]


def farm_stacks(provisioning: ProvisioningConfig) -> dict[str, dict]:
    """The farm's stacks (configs/stacks/*.yml but the site template), by stack name. A Docker config
    read from a file gets its content's digest in its name (configs are immutable): a changed VCL
    makes a changed stack."""
    folder = provisioning.project_path(provisioning.stacks_dir)
    stacks = {}
    for path in sorted(folder.glob("*.yml")):
        if path.stem == "site":
            continue
        compose = yaml.safe_load(path.read_text())
        for key, entry in compose.get("configs", {}).items():
            if "file" in entry:
                source = (folder / entry["file"]).resolve()
                entry.update(file=str(source), name=f"{path.stem}_{key}_{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}")
        stacks[path.stem] = compose
    return stacks


# -- a site -------------------------------------------------------------------------------------


def site_slug(name: str) -> str:
    """A name for the site's stack and secret: its host name with dots as dashes and a digest of the
    name (my-site.com and my.site.com would otherwise meet), at most 40 characters."""
    return f"{name.replace('.', '-')[:31]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def secret_name(site: Site) -> str:
    return f"{site_slug(site.name)}-db-password"


def render_site_stack(template: dict, site: Site, provisioning: ProvisioningConfig) -> dict:
    """The site template with $placeholders filled in string by string, after YAML parsing, so no
    value can change the file's structure."""
    values = {"site": site.name, "slug": site_slug(site.name), "database": site.database, "db_user": site.database,
              "db_host": provisioning.db_host, "secret": secret_name(site), "content_path": site.content_path,
              "image": provisioning.wordpress_image, "replicas": str(provisioning.site_replicas)}

    def fill(node):
        if isinstance(node, dict):
            return {fill(k): fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            text = string.Template(node).substitute(values)
            return int(text) if node == "$replicas" else text
        return node

    return fill(template)


class FileSecrets:
    """Site passwords as 0600 files in a folder: the store when there is no Swarm (the demo farm)."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()

    def put(self, name: str, value: str, site: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / f".{name}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value)
        os.replace(self.folder / f".{name}.new", self.folder / name)


class SwarmSecrets:
    """Site passwords as Swarm secrets (write-only: a password that exists is never read back)."""

    def __init__(self, swarm: SwarmResource):
        self.swarm = swarm

    def exists(self, name: str) -> bool:
        return self.swarm.secret_exists(name)

    def put(self, name: str, value: str, site: str) -> None:
        self.swarm.put_secret(name, value.encode(), {"wpfarm.site": site})


def provision_database(db: MariaDB, site: Site, user_host: str, secrets_store) -> str:
    """The site's database (utf8mb4) and its own user with SITE_PRIVILEGES on it alone. A new
    password is generated only when the user or its stored secret is missing; it is set on the server
    first and stored second, so a failure in between heals on the next run. Returns "kept" or "set"."""
    name = secret_name(site)
    keep = db.user_exists(site.database, user_host) and secrets_store.exists(name)
    password = None if keep else secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in a SQL literal
    db.provision_site(site.database, site.database, user_host, password, SITE_PRIVILEGES)
    if password is not None:
        secrets_store.put(name, password, site.name)
    return "kept" if keep else "set"


def provision_content(site: Site, runner: Runner, owner: str | None) -> None:
    run(runner, ["mkdir", "-p", "--", site.content_path])
    if owner:
        run(runner, ["chown", "--", owner, site.content_path])


def site_provision(site: Site, db: MariaDB, runner: Runner, provisioning: ProvisioningConfig,
                   swarm: SwarmResource) -> dict:
    """Everything a site needs, idempotently; returns its metadata (never the password)."""
    if swarm.docker_host:
        store = SwarmSecrets(swarm)
    elif provisioning.secrets_dir:
        store = FileSecrets(provisioning.secrets_dir)
    else:
        raise ValueError("nowhere to keep the site's database password: set swarm.docker_host or provisioning.secrets_dir")
    password = provision_database(db, site, provisioning.db_user_host, store)
    provision_content(site, runner, provisioning.content_owner)
    stack = f"site-{site_slug(site.name)}"
    deployed = "no Swarm: not deployed"
    if swarm.docker_host:
        template = yaml.safe_load((provisioning.project_path(provisioning.stacks_dir) / "site.yml").read_text())
        changes = plan_stack(stack, render_site_stack(template, site, provisioning), swarm.stack_services(stack))
        for change in changes:
            swarm.deploy_stack(stack, change.payload)
        deployed = changes[0].detail if changes else "unchanged"
    return {"database": site.database, "db_user": f"{site.database}@{provisioning.db_user_host}",
            "privileges": SITE_PRIVILEGES, "password": password, "secret": secret_name(site),
            "content_path": site.content_path, "stack": stack, "stack_deploy": deployed}


def default_database_name(site_name: str) -> str:
    """wp_<name with _ for dots and dashes>_<digest>: readable, and distinct for distinct sites."""
    return f"wp_{re.sub(r'[^a-z0-9]+', '_', site_name)[:52]}_{hashlib.sha256(site_name.encode()).hexdigest()[:8]}"
