"""`wpfarm demo`, `site create` and `provision`: the farm itself."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from wpfarm_assets.cli.arguments import parser
from wpfarm_assets.cli.backup import backup, binlogs, drill
from wpfarm_assets.cli.restore import restore
from wpfarm_assets.cli.runs import instance, run_job, run_over_sites, sync_partitions
from wpfarm_assets.core.config import (
    FarmConfig,
    Site,
    add_site_to_file,
    load_config,
)
from wpfarm_assets.partitions import run_tags


def demo(args: argparse.Namespace) -> int:
    from resources.mariadb import MariaDB
    from resources.ssh import LocalRunner
    from wpfarm_assets.backups.verify import tree_digest
    from wpfarm_assets.demo import DemoSize, make_demo_farm, make_gpg_key

    workdir = Path(args.workdir).resolve()
    gnupg = workdir / "gnupg"
    fingerprint = make_gpg_key(gnupg)
    password_hint = ""
    if not os.environ.get("WPFARM_RESTIC_PASSWORD"):  # the demo's own file store password, kept beside it
        password_file = workdir / "restic-password"
        if not password_file.exists():
            password_file.touch(mode=0o600)
            password_file.write_text(secrets.token_urlsafe(32))
        os.environ["WPFARM_RESTIC_PASSWORD"] = password_file.read_text().strip()
        print(f"file store password: {password_file} (export WPFARM_RESTIC_PASSWORD=$(cat {password_file}))")
        password_hint = f"WPFARM_RESTIC_PASSWORD=$(cat {password_file}) "
    db = MariaDB(LocalRunner(), args.db_host, args.db_port, args.db_user, os.environ.get("WPFARM_DB_PASSWORD"))
    print(f"building {args.sites} demo sites in {workdir} ...")
    path = make_demo_farm(workdir, db, sites=args.sites, gpg_recipient=fingerprint,
                          target=f"file://{workdir / 'backups'}", gpg_home=str(gnupg), size=DemoSize(),
                          prefix=args.prefix)
    config = load_config(path)
    print(f"farm configuration: {path}")
    # As on a farm: the infrastructure checked, the sites provisioned (users, folders), then backed
    # up (retention follows).
    inst = instance()
    order = sync_partitions(inst, config)
    infrastructure = run_job("check_infrastructure", config, inst).success
    names = [s.name for s in config.sites]  # the demo farm's (the instance may hold others' partitions)
    if not run_over_sites("provision_sites", names, order, config, inst) or backup([], config) != 0:
        return 1
    site = config.sites[len(config.sites) // 2]
    scratch_db, scratch_dir = f"wp_{args.prefix}_restore_check", workdir / "restore-check"
    shutil.rmtree(scratch_dir, ignore_errors=True)
    db.drop_database(scratch_db)
    ns = parser().parse_args(["restore", site.name, "--to-database", scratch_db, "--to-path", str(scratch_dir),
                              "--gnupg-home", str(gnupg)])
    if restore(ns, config) != 0:
        return 1
    source_sums, restored_sums = db.checksums(site.database), db.checksums(scratch_db)
    source_tree, restored_tree = tree_digest(Path(site.content_path).parent), tree_digest(scratch_dir)
    tables_equal = source_sums == restored_sums and bool(source_sums)
    files_equal = source_tree == restored_tree
    print(f"\n{site.name}: {len(source_sums)} tables, per-table checksums "
          f"{'EQUAL' if tables_equal else 'DIFFER'} ({site.database} vs {scratch_db})")
    print(f"{site.name}: {source_tree[1]} files, tree sha256 {source_tree[0][:16]}… "
          f"{'EQUAL' if files_equal else 'DIFFER'} (vs {restored_tree[0][:16]}… in {scratch_dir})")
    print("\nrestore drills (every site's newest backups restored into scratch space and proven):")
    drilled = drill([], config) == 0
    print("\nthe integrity check the daily schedule runs (so that the UI opens on a farm with history):")
    checked = run_job("verify_backups", config, inst).success
    print("\npoint-in-time recovery (a MariaDB of the demo's own that writes binary logs, in "
          f"{workdir / 'pitr'}):")
    recovered = demo_pitr(workdir / "pitr", str(gnupg), fingerprint, args.prefix)
    print(f"\nthe farm's private key (restores, exports, clones need it): --gnupg-home {gnupg}")
    print(f"\nweb UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} WPFARM_CONFIG={path} {password_hint}"
          f"{Path(sys.executable).parent / 'dagster'} dev -m wpfarm_assets.definitions")
    return 0 if tables_equal and files_equal and drilled and checked and infrastructure and recovered else 1


def demo_pitr(workdir: Path, gnupg: str, fingerprint: str, prefix: str) -> bool:
    """One site on a server with binary logs: its nightly dump, an order, then a mistake; the
    archive; the site restored to the second between them. Prints its state at each step."""

    import yaml

    from wpfarm_assets.demo import DemoSize, binlog_server, create_site_content, create_site_database

    name, database = f"pitr.{prefix}.wpfarm.test", f"wp_{prefix}_pitr"
    with binlog_server(workdir / "mariadb") as db:
        create_site_database(db, database, name, DemoSize(), seed=7)
        content = create_site_content(workdir / "sites" / name, name, DemoSize(posts=10, uploads=1), seed=7)
        path = workdir / "farm.yaml"
        path.write_text(yaml.safe_dump({
            "database": {"host": db.host, "port": db.port, "user": db.user, "pitr": True},
            "backup": {"target": f"file://{workdir / 'backups'}", "gpg_recipient": fingerprint, "gpg_home": gnupg},
            "drill": {"scratch_root": str(workdir / "drills"), "gnupg_home": gnupg},
            "sites": [{"name": name, "database": database, "content_path": str(content)}]}, sort_keys=False))
        config = load_config(path)

        def state(when: str) -> None:
            posts, newest = db.query(f"SELECT COUNT(*), (SELECT post_title FROM {database}.wp_posts WHERE post_type = "
                                     f"'post' ORDER BY ID DESC LIMIT 1) FROM {database}.wp_posts WHERE post_type = 'post'")[0]
            print(f"  {when}: {posts} posts, the newest {newest!r}")

        if backup([], config) != 0 or binlogs(config) != 0:  # last night's dump, and the archive so far
            return False
        db.query(f"INSERT INTO {database}.wp_posts (post_title, post_content, post_excerpt, to_ping, pinged, "
                 "post_content_filtered, post_type) VALUES ('Order #1001', 'two mugs', '', '', '', '', 'post')")
        time.sleep(1.1)
        moment = datetime.now(timezone.utc).replace(microsecond=0)
        at_moment = db.checksums(database)
        state(f"{moment:%H:%M:%S}, after a new order")
        time.sleep(1.1)
        db.query(f"DELETE FROM {database}.wp_posts WHERE post_type = 'post'")  # a plugin gone wrong
        state("then a plugin deletes every post")
        ns = parser().parse_args(["restore", name, "--kind", "db", "--time", moment.isoformat(), "--gnupg-home", gnupg])
        if binlogs(config) != 0 or restore(ns, config) != 0:
            return False
        state(f"restored to {moment:%H:%M:%S}")
        equal = db.checksums(database) == at_moment
        # Its partition goes again: the UI opens on the demo farm, whose inventory does not list it.
        instance().delete_dynamic_partition("sites", name)
        print(f"{name}: per-table checksums {'EQUAL' if equal else 'DIFFER'} to the moment before the mistake")
        return equal


def site_create(args: argparse.Namespace, config: FarmConfig) -> int:
    """Add the site to the inventory (unless it is there), provision it, back it up: three steps
    that each show in the UI (the partition, then site_provisioning, database_dump and file_archive)."""
    from wpfarm_assets.provisioning.plans import default_database_name

    if not any(s.name == args.name for s in config.sites):
        site = Site(name=args.name, database=args.database or default_database_name(args.name),
                    content_path=args.content_path or f"{config.provisioning.sites_root}/{args.name}/wp-content")
        add_site_to_file(config.source, site)
        print(f"{site.name}: added to {config.source} (database {site.database}, content {site.content_path})")
        config = config.reread()
    inst = instance()
    sync_partitions(inst, config)
    tags = run_tags([args.name])
    if not run_job("provision_sites", config, inst, args.name, tags=tags).success:
        return 1
    return 0 if run_job("back_up_sites", config, inst, args.name, tags=tags).success else 1


def provision(args: argparse.Namespace, config: FarmConfig) -> int:
    """Plan the selected steps of provision_farm (all by default); change the farm only with --apply."""
    from wpfarm_assets.provisioning.jobs import provision_farm

    steps = args.step or provision_farm.graph.node_names()
    ops = {step: {"config": {"dry_run": not args.apply}} for step in steps}
    if "provision_droplets" in ops:
        ops["provision_droplets"]["config"]["destroy_extra"] = args.destroy_extra
    result = run_job("provision_farm", config, instance(), op_selection=steps, run_config={"ops": ops})
    for event in result.all_events:
        if event.is_successful_output:
            metadata = event.step_output_data.metadata
            plan = metadata["plan"].value.records
            print(f"{event.step_key}: {metadata['changes'].value or 'no'} change(s){'' if args.apply else ' (plan only)'}")
            for row in plan:
                print(f"  {row.data['action']:10} {row.data['target']}: {row.data['detail']}")
    return 0 if result.success else 1
