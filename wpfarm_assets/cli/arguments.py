"""The one parser of every `wpfarm` command, and the argument types it checks before anything runs."""

from __future__ import annotations

import argparse
import os
import re

from wpfarm_assets.core.config import (
    ConfigError,
    validate_absolute_path,
    validate_identifier,
    validate_site_name,
)


def demo_prefix(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{1,20}", text):
        raise argparse.ArgumentTypeError("use 1-20 lower-case letters and digits")
    return text


def parser() -> argparse.ArgumentParser:
    from wpfarm_assets.provisioning.jobs import provision_farm

    p = argparse.ArgumentParser(prog="wpfarm", description="Back up, restore and watch a WordPress farm.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup", help="back up sites now (all when none are named)")
    b.add_argument("sites", nargs="*", metavar="SITE")
    b.add_argument("--failed", action="store_true", help="retry exactly the sites whose last backup failed")
    r = sub.add_parser("restore", help="restore a site from its newest (or a given day's) backup")
    r.add_argument("site", metavar="SITE")
    r.add_argument("--date", help="YYYY-MM-DD (UTC): the newest good backup of that day")
    r.add_argument("--at", help="yyyymmddThhmmssZ: exactly this backup (see `wpfarm backups SITE`)")
    r.add_argument("--time", help="2026-12-07T14:32:05Z (UTC): the database as it was at that second (the dump "
                   "before it and the archived binary logs up to it); files: the newest backup before it")
    r.add_argument("--to-database", help="restore into this database instead of the site's own")
    r.add_argument("--to-path", help="extract wp-content (and wp-config.php) under this directory instead")
    r.add_argument("--path", help="restore only this part of the files, e.g. wp-content/uploads/2026 (implies --kind files)")
    r.add_argument("--table", action="append", metavar="NAME",
                   help="restore only this table of the database (repeatable); every other table is untouched")
    r.add_argument("--kind", choices=["all", "db", "files"], default=None,
                   help="default: all (files with --path, db with --table)")
    r.add_argument("--force", action="store_true",
                   help="restore even into another site's database or folder, or a system directory")
    r.add_argument("--gnupg-home", default=os.environ.get("GNUPGHOME"), help="keyring with the farm's private key")
    r.add_argument("--no-checkpoint", dest="checkpoint", action="store_false",
                   help="in place, do not first back up what the restore overwrites (by default it does: the undo)")
    r.add_argument("--from", dest="source", choices=["primary", "offsite"], default="primary",
                   help="offsite: from the off-site copy (backup.offsite), as it was at --as-of")
    r.add_argument("--as-of", help="with --from offsite: 2026-12-07T14:32:05Z (UTC); what was deleted or overwritten "
                                   "on the copy after then is ignored (default: now)")
    off = sub.add_parser("offsite", help="the off-site copy").add_subparsers(dest="offsite_command", required=True)
    oc = off.add_parser("copy", help="copy new backups of sites (all when none) to the off-site target now")
    oc.add_argument("sites", nargs="*", metavar="SITE")
    orc = off.add_parser("recover", help="rebuild a backup target from the off-site copy as it was at --as-of")
    orc.add_argument("--as-of", required=True, help="2026-12-07T14:32:05Z (UTC): a time before the incident")
    orc.add_argument("--to", required=True, metavar="TARGET",
                     help="s3://bucket[/prefix] or file:///path; the keys of backup.target (SPACES_*) are used")
    orc.add_argument("--site", action="append", metavar="SITE", help="only this site (repeatable; default: all)")
    dr = sub.add_parser("drill", help="restore drills now: newest backups restored into scratch space and proven")
    dr.add_argument("sites", nargs="*", metavar="SITE")
    fl = sub.add_parser("files", help="browse (ls) or read (cat) a files backup without restoring it")
    fl.add_argument("site", metavar="SITE")
    fl.add_argument("action", choices=["ls", "cat"])
    fl.add_argument("path", nargs="?", metavar="PATH", help="wp-content/… or wp-config.php (ls: default the top)")
    fl.add_argument("--at", help="yyyymmddThhmmssZ: this files backup (default: the newest)")
    cl = sub.add_parser("clone", help="a staging clone of a site at a new address (or --delete one)")
    cl.add_argument("site", metavar="SITE", help="the site to clone (with --delete: the clone to remove)")
    cl.add_argument("name", nargs="?", metavar="NEW_NAME", help="the clone's name and address")
    cl.add_argument("--delete", action="store_true", help="remove the clone SITE: database, folder, record")
    cl.add_argument("--date", help="YYYY-MM-DD (UTC): from the newest good backups of that day")
    cl.add_argument("--at", help="yyyymmddThhmmssZ: from this database backup")
    cl.add_argument("--time", help="2026-12-07T14:32:05Z (UTC): the database as it was at that second (binary logs)")
    cl.add_argument("--database", type=identifier, help="default: wp_<name with _ for dots and dashes>_<digest>")
    cl.add_argument("--content-path", type=absolute_path, help="default: <provisioning.sites_root>/NEW_NAME/wp-content")
    cl.add_argument("--url", help="the clone's address (default http(s)://NEW_NAME, the site's scheme)")
    cl.add_argument("--gnupg-home", default=os.environ.get("GNUPGHOME"), help="keyring with the farm's private key")
    ex = sub.add_parser("export", help="one zip of a site's backup for its owner: database.sql, wp-content, "
                                       "wp-config.php (secrets blanked), README.txt; its sha256 printed")
    ex.add_argument("site", metavar="SITE")
    ex.add_argument("--to", required=True, metavar="FILE", help="the zip to write (it must not exist)")
    ex.add_argument("--at", help="yyyymmddThhmmssZ: this database backup, with the newest files backup before it")
    ex.add_argument("--include-secrets", action="store_true",
                    help="keep wp-config.php's database password, keys and salts (default: blanked)")
    ex.add_argument("--gnupg-home", default=os.environ.get("GNUPGHOME"), help="keyring with the farm's private key")
    sub.add_parser("status", help="the newest backup of every site and kind, and its last drill: age and state")
    sub.add_parser("binlogs", help="archive the binary logs now (what the schedule runs every few minutes)")
    bk = sub.add_parser("backups", help="every restore point of a site, with its verification state")
    bk.add_argument("site", metavar="SITE")
    bk.add_argument("--verify", action="store_true", help="read every backup whole and compare its sha256")
    d = sub.add_parser("demo", help="build a demo farm on the local MariaDB, back it up, restore one site")
    d.add_argument("--sites", type=int, default=20)
    d.add_argument("--workdir", default=".demo")
    d.add_argument("--prefix", default="demo", type=demo_prefix, help="names: wp_PREFIX_001, site001.PREFIX.wpfarm.test")
    d.add_argument("--db-host", default="127.0.0.1")
    d.add_argument("--db-port", type=int, default=3306)
    d.add_argument("--db-user", default="root")
    site = sub.add_parser("site", help="manage sites").add_subparsers(dest="site_command", required=True)
    c = site.add_parser("create", help="add a site to the inventory, provision it and take its first backup")
    c.add_argument("name", metavar="NAME", type=site_name)
    c.add_argument("--database", type=identifier, help="default: wp_<name with _ for dots and dashes>_<digest>")
    c.add_argument("--content-path", type=absolute_path, help="default: <provisioning.sites_root>/NAME/wp-content")
    pr = sub.add_parser("provision", help="plan (or --apply) the farm's provisioning steps")
    pr.add_argument("--apply", action="store_true", help="change the farm (default: show the plan only)")
    pr.add_argument("--step", action="append", choices=provision_farm.graph.node_names(), help="only these steps (repeatable)")
    pr.add_argument("--destroy-extra", action="store_true", help="destroy droplets the topology does not have")
    return p


def _argument(validate):
    def parse(text: str) -> str:
        try:
            return validate(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


site_name, identifier, absolute_path = (_argument(validate_site_name), _argument(validate_identifier),
                                        _argument(validate_absolute_path))
