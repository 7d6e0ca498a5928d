"""`wpfarm clone`, `export` and `files`: a site's backup as a staging clone, as a zip for its owner,
or browsed file by file; the live site only read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wpfarm_assets.cli.runs import instance, object_store_of, parse_at, parse_date, run_job
from wpfarm_assets.core.config import (
    ConfigError,
    FarmConfig,
    validate_absolute_path,
)


def clone(args: argparse.Namespace, config: FarmConfig) -> int:
    """`wpfarm clone SITE NEW_NAME`: a staging clone at a new address (the clone_site job); `--delete
    NAME` removes one (backups/clone.py). Its folder on the storage node, its database through this
    machine's client."""
    from resources.ssh import LocalRunner, SSHRunner

    # The clone's folder is where the sites' are (the storage node, as the clone_site job writes it).
    runner = SSHRunner(config.storage.ssh) if config.storage.ssh else LocalRunner()
    try:
        return _clone(args, config, runner)
    finally:
        runner.close()


def _clone(args: argparse.Namespace, config: FarmConfig, runner) -> int:
    from resources.ssh import LocalRunner
    from wpfarm_assets.backups.clone import clone_problem, clone_target, clone_url, delete_clone
    from wpfarm_assets.definitions import initialized

    db = initialized(config, "mariadb").client(LocalRunner())
    resource = object_store_of(config)
    store = resource.store()
    if args.delete:
        if args.name:
            raise ConfigError("clone --delete takes one name: the clone's")
        record = delete_clone(store, db, runner, config, args.site)
        print(f"{args.site}: clone of {record['clone_of']} removed (database {record['database']}, "
              f"folder {record['content_path'].rsplit('/', 1)[0]})")
        return 0
    if not args.name:
        raise ConfigError("clone SITE NEW_NAME: the new name is missing")
    if args.at:
        parse_at(args.at)
    if args.date:
        parse_date(args.date)
    if args.url:
        clone_url(args.url, args.name, "http")
    database, content_path = clone_target(config, args.name, args.database, args.content_path)
    if problem := clone_problem(config, store, db, runner, args.name, database, content_path):
        raise ConfigError(f"clone {args.name} of {args.site}: {problem}; refused")
    if args.time:
        from wpfarm_assets.backups.pitr import parse_time

        if args.at or args.date:
            raise ConfigError("--time, --date and --at each choose what to clone: give one")
        parse_time(args.time)
    op_config = {"site": args.site, "name": args.name, "date": args.date, "at": args.at, "time": args.time,
                 "database": args.database,
                 "content_path": args.content_path, "url": args.url, "gnupg_home": args.gnupg_home}
    result = run_job("clone_site", config, instance(), f"{args.site} as {args.name}",
                     run_config={"ops": {"clone_site_op": {"config": op_config}}})
    if not result.success:
        return 1
    done = result.output_for_node("clone_site_op")
    print(f"{done['name']}: clone of {done['clone_of']} at {done['url']}: database {done['database']} "
          f"(from {done['database_backup'].rsplit('/', 1)[-1]}), files in {done['content_path']}; "
          "search engines asked to stay away (blog_public 0)")
    for table, rows in sorted(done["rows_changed"].items()):
        print(f"  {table}: {rows} row(s) rewritten")
    if done["left_alone"]:
        print(f"  {done['left_alone']} value(s) looked serialized but did not decode: left as they were")
    print(f"remove it with: wpfarm clone --delete {done['name']}")
    return 0


def export(args: argparse.Namespace, config: FarmConfig) -> int:
    """`wpfarm export SITE --to FILE`: the site's backup as one zip for its owner (backups/export.py)."""
    from wpfarm_assets.backups.export import export_site
    from wpfarm_assets.backups.retired import site_or_retired

    if args.at:
        parse_at(args.at)
    to = Path(validate_absolute_path(str(Path(args.to).absolute())))
    if not to.parent.is_dir():
        raise ConfigError(f"--to {args.to}: folder {to.parent} does not exist")
    if to.exists() or to.is_symlink():
        raise ConfigError(f"--to {args.to} exists: refused (an export never replaces a file)")
    resource = object_store_of(config)
    site, _ = site_or_retired(config, resource.store(), args.site)
    done = export_site(site, resource.store(), resource.repository(site.name), args.gnupg_home, to, args.at,
                       args.include_secrets)
    print(f"{site.name}: exported database {done['database']} ({done['sql_bytes']:,} bytes of SQL) and files "
          f"{done['files']} ({done['file_count']} files) to {done['path']}, {done['bytes']:,} bytes"
          + ("" if done["secrets"] else "; wp-config.php's password, keys and salts blanked"))
    print(f"sha256 {done['sha256']}  {done['path']}")
    return 0


def files(args: argparse.Namespace, config: FarmConfig) -> int:
    """Browse (`ls`) or read (`cat`) a files backup without restoring anything: the newest, or the
    one stamped --at. `cat` writes the file's bytes, nothing else, to stdout (for a pipe)."""
    from wpfarm_assets.backups.restore import RestoreError, choose_backup, validate_member_path
    from wpfarm_assets.backups.retired import site_or_retired

    object_store = object_store_of(config)
    store = object_store.store()
    site, _ = site_or_retired(config, store, args.site)
    content = Path(site.content_path).name
    path = validate_member_path(args.path, content) if args.path else ""
    if args.at:
        parse_at(args.at)
    repository = object_store.repository(site.name)
    key, manifest, _ = choose_backup(store, site.name, "files", None, at=args.at, repository=repository)
    if not manifest.is_snapshot:
        raise RestoreError(f"{key.stamp} is an older tar archive: browse it by restoring it "
                           "(wpfarm restore SITE --kind files --at STAMP --path PART --to-path DIR)")
    entries = repository.ls(manifest.snapshot_id, path)
    if not entries:
        raise RestoreError(f"{args.path} is not in files backup {key.stamp} of {site.name}")
    if args.action == "cat":
        itself = [e for e in entries if e["path"] == "/" + path]  # a folder's listing is of what is in it
        if not itself or itself[0]["type"] != "file":
            kind = f"a {itself[0]['type']}" if itself else "a folder"
            raise RestoreError(f"{args.path} is {kind} in files backup {key.stamp}: `cat` reads a file (`ls` it)")
        repository.dump(manifest.snapshot_id, path, sys.stdout.buffer.write)
        sys.stdout.buffer.flush()
        return 0
    print(f"# {site.name} files backup {key.stamp} (snapshot {manifest.snapshot_id[:8]}): /{path}", file=sys.stderr)
    for e in sorted(entries, key=lambda e: (e["type"] != "dir", e["name"])):
        size = "-" if e["type"] == "dir" else f"{e.get('size', 0):,}"
        print(f"{e['type']:7} {size:>15}  {e.get('mtime', '')[:19].replace('T', ' ')}  {e['path'].lstrip('/')}"
              + ("/" if e["type"] == "dir" else ""))
    return 0
