"""Building the farm and its sites: plans (desired against actual state) and the steps that apply them.

Every step first plans a list of Changes, which is what a dry run shows; applying a plan twice does
nothing the second time, because the second plan is empty. Nothing is ever destroyed unless asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resources.mariadb import MariaDB
from resources.ssh import Runner, run
from resources.swarm import SwarmResource
from wpfarm_assets.core.config import ProvisioningConfig, Site, TopologyConfig, validate_site_name
from wpfarm_assets.core.topology import Droplet, Node, droplet_specs, tier_of_node

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
    # A config's content is in its name (farm_stacks); where its file lies does not matter.
    hashed = {**compose, "configs": {k: {f: v for f, v in e.items() if f != "file"}
                                     for k, e in compose.get("configs", {}).items()}}
    text = yaml.safe_dump(hashed, sort_keys=True)
    # `docker stack deploy` fills ${VAR} from the environment: a changed value is a changed stack.
    env = {name: os.environ.get(name, "") for name in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)))}
    digest = hashlib.sha256((text + json.dumps(env)).encode()).hexdigest()
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


_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def sites_vcl(backends: list[tuple[str, str, int]]) -> str:
    """sites.vcl for configs/varnish/default.vcl: one backend per (site, host, port) and
    `wpfarm_route`, which sends each site's Host to it, then www.<site> where www.<site> is not a
    site of its own, and answers 404 otherwise. Site names are validated host names and hosts Docker
    service names, so neither can break out of a VCL string."""
    lines = ["# Generated by wpfarm from the deployed site stacks. Do not edit.", "backend default none;"]
    exact, aliases = [], []
    names = {site for site, _, _ in backends}
    for site, host, port in sorted(backends):
        if not _SERVICE.match(host):
            raise ValueError(f"{host!r} is not a service name")
        name = f"site_{hashlib.sha256(validate_site_name(site).encode()).hexdigest()[:12]}"
        lines.append(f'backend {name} {{ .host = "{host}"; .port = "{int(port)}"; .connect_timeout = 5s; '
                     '.first_byte_timeout = 60s; }')
        exact.append(f'    if (req.http.host == "{site}") {{ set req.backend_hint = {name}; return; }}')
        if f"www.{site}" not in names:
            aliases.append(f'    if (req.http.host == "www.{site}") {{ set req.backend_hint = {name}; return; }}')
    route = ["sub wpfarm_route {", *exact, *aliases, '    return (synth(404, "No such site"));', "}"]
    return "\n".join(lines + route) + "\n"


def deployed_site_backends(announced: list[dict], log=None) -> list[tuple[str, str, int]]:
    """The sites whose stacks run now, one each: (site, service name, port 80), from the services'
    labels (SwarmResource.site_labels). A label that is not a valid site name, or a second service
    for a site (a stack left from an earlier name), is skipped with a warning: one stray service
    must not stop Varnish."""
    backends: dict[str, str] = {}
    for labels in announced:
        service = labels.get("service", "")
        if not service.endswith("_wordpress"):
            continue
        try:
            site = validate_site_name(labels["name"])
        except ValueError as exc:
            if log:
                log.warning(f"service {service}: {exc}; not routed")
            continue
        preferred = f"site-{site_slug(site)}_wordpress"
        if site in backends and log:
            log.warning(f"site {site} has two services ({backends[site]}, {service}); routing to {preferred}")
        if site not in backends or service == preferred:
            backends[site] = service
    return [(site, service, 80) for site, service in sorted(backends.items())]


def farm_stacks(provisioning: ProvisioningConfig, generated: dict[str, str], scratch: Path) -> dict[str, dict]:
    """The farm's stacks (configs/stacks/*.yml but the site template), by stack name. A Docker config
    read from a file gets its content's digest in its name (configs are immutable), so a changed VCL
    makes a changed stack. `generated` replaces configs' files by the given contents (sites.vcl),
    written to `scratch`, which must outlive the deploy."""
    folder = provisioning.project_path(provisioning.stacks_dir)
    stacks = {}
    for path in sorted(folder.glob("*.yml")):
        if path.stem == "site":
            continue
        compose = yaml.safe_load(path.read_text())
        for key, entry in compose.get("configs", {}).items():
            if key in generated:
                entry["file"] = str(scratch / key)
                (scratch / key).write_text(generated[key])
            if "file" in entry:
                source = (folder / entry["file"]).resolve()
                entry.update(file=str(source), name=f"{path.stem}_{key}_{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}")
        stacks[path.stem] = compose
    return stacks


def farm_stack_changes(provisioning: ProvisioningConfig, swarm: SwarmResource, scratch: Path,
                       only: set[str] | None = None, log=None) -> list[Change]:
    """The farm stacks to deploy (those in `only`, when given), with sites.vcl for the sites deployed now."""
    generated = {"varnish_sites": sites_vcl(deployed_site_backends(swarm.site_labels(), log))}
    return [change for name, compose in farm_stacks(provisioning, generated, scratch).items()
            if only is None or name in only for change in plan_stack(name, compose, swarm.stack_services(name))]


def route_sites(provisioning: ProvisioningConfig, swarm: SwarmResource, log=None) -> str:
    """Redeploy the cache stack, if it runs, when the deployed sites changed (its sites.vcl)."""
    if not swarm.stack_services("cache"):
        return "no cache stack"
    with tempfile.TemporaryDirectory() as scratch:
        changes = farm_stack_changes(provisioning, swarm, Path(scratch), only={"cache"}, log=log)
        for change in changes:
            swarm.deploy_stack(change.target, change.payload)
    return "cache stack redeployed" if changes else "unchanged"


# -- a site -------------------------------------------------------------------------------------


def site_slug(name: str) -> str:
    """A name for the site's stack and secret: its host name with dots as dashes and a digest of the
    name (my-site.com and my.site.com would otherwise meet), at most 40 characters."""
    return f"{name.replace('.', '-')[:31]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def secret_name(site: Site) -> str:
    """The site password's secret (a file name; in a Swarm, the stem of its versions -v1, -v2...)."""
    return f"{site_slug(site.name)}-db-password"


def render_site_stack(template: dict, site: Site, provisioning: ProvisioningConfig, secret: str) -> dict:
    """The site template with $placeholders filled in string by string, after YAML parsing, so no
    value can change the file's structure. `secret`: the password's current secret version."""
    values = {"site": site.name, "slug": site_slug(site.name), "database": site.database, "db_user": site.database,
              "db_host": provisioning.db_host, "secret": secret, "content_path": site.content_path,
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
    """Site passwords as 0600 files in a folder: the store when there is no Swarm (the demo farm).
    Readable, so a site user that was lost is recreated with the password the site already has."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def read(self, name: str) -> str | None:
        path = self.folder / name
        return path.read_text() if path.exists() else None

    def put(self, name: str, value: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, scratch = tempfile.mkstemp(prefix=f".{name}.", dir=self.folder)  # created 0600
        with os.fdopen(fd, "w") as out:
            out.write(value)
        os.replace(scratch, self.folder / name)


def provision_file_password(db: MariaDB, site: Site, user_host: str, store: FileSecrets) -> tuple[str, str]:
    """The stored password, set on the user every time (a lost user comes back with it); a new one
    is stored first when there is none."""
    name = secret_name(site)
    password = store.read(name)
    outcome = "kept" if password else "set"
    if password is None:
        password = secrets.token_urlsafe(24)
        store.put(name, password)
    db.provision_site(site.database, site.database, user_host, password, SITE_PRIVILEGES)
    return name, outcome


def provision_swarm_password(db: MariaDB, site: Site, user_host: str, swarm: SwarmResource) -> tuple[str, str]:
    """Swarm secrets are write-only and immutable, and the site's stack uses its secret. The newest
    version <slug>-db-password-v<N> is kept while the site user exists and the stack uses it (or
    there is no stack yet to disagree). Otherwise a new password goes into version N+1 and is set on
    the server; the stack moves to it on its deploy, which comes after. A run that fails in between
    leaves a newest version the stack does not use, so the next run sets a new one again: the server
    and the stack never disagree for longer than one failed run."""
    base = secret_name(site)
    versions = swarm.secret_versions(base)
    used = swarm.stack_secrets(f"site-{site_slug(site.name)}")
    current = versions[-1] if versions else None
    if current and (current in used or not used) and db.user_exists(site.database, user_host):
        db.provision_site(site.database, site.database, user_host, None, SITE_PRIVILEGES)
        return current, "kept"
    name = f"{base}-v{int(current.rsplit('-v', 1)[1]) + 1 if current else 1}"
    password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in a SQL literal
    swarm.create_secret(name, password.encode(), {"wpfarm.site": site.name})
    db.provision_site(site.database, site.database, user_host, password, SITE_PRIVILEGES)
    return name, "set"


def provision_content(site: Site, runner: Runner, owner: str | None) -> None:
    run(runner, ["mkdir", "-p", "--", site.content_path])
    if owner:
        run(runner, ["chown", "--", owner, site.content_path])


def site_provision(site: Site, db: MariaDB, runner: Runner, provisioning: ProvisioningConfig,
                   swarm: SwarmResource) -> dict:
    """Everything a site needs, idempotently; returns its metadata (never the password)."""
    if swarm.docker_host:
        secret, password = provision_swarm_password(db, site, provisioning.db_user_host, swarm)
    elif provisioning.secrets_dir:
        secret, password = provision_file_password(db, site, provisioning.db_user_host,
                                                   FileSecrets(provisioning.secrets_dir))
    else:
        raise ValueError("nowhere to keep the site's database password: set swarm.docker_host or provisioning.secrets_dir")
    provision_content(site, runner, provisioning.content_owner)
    stack = f"site-{site_slug(site.name)}"
    deployed = "no Swarm: not deployed"
    if swarm.docker_host:
        template = yaml.safe_load((provisioning.project_path(provisioning.stacks_dir) / "site.yml").read_text())
        compose = render_site_stack(template, site, provisioning, secret)
        changes = plan_stack(stack, compose, swarm.stack_services(stack))
        for change in changes:
            swarm.deploy_stack(stack, change.payload)
        deployed = changes[0].detail if changes else "unchanged"
        swarm.prune_secret_versions(secret_name(site), keep=secret)
    return {"database": site.database, "db_user": f"{site.database}@{provisioning.db_user_host}",
            "privileges": SITE_PRIVILEGES, "password": password, "secret": secret,
            "content_path": site.content_path, "stack": stack, "stack_deploy": deployed}


def default_database_name(site_name: str) -> str:
    """wp_<name with _ for dots and dashes>_<digest>: readable, and distinct for distinct sites."""
    return f"wp_{re.sub(r'[^a-z0-9]+', '_', site_name)[:52]}_{hashlib.sha256(site_name.encode()).hexdigest()[:8]}"
