"""`wpfarm restore` and `wpfarm backups`: a site back from its backups, and its restore points."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from wpfarm_assets.cli.runs import instance, parse_at, parse_date, run_job, store_of
from wpfarm_assets.core.config import (
    ConfigError,
    FarmConfig,
    validate_absolute_path,
    validate_identifier,
)
from wpfarm_assets.core.keys import KINDS, site_root, snapshot_ids, split_future


def restore(args: argparse.Namespace, config: FarmConfig) -> int:
    from wpfarm_assets.backups.retired import in_place_problem, site_or_retired

    site, retired = site_or_retired(config, store_of(config), args.site)
    if args.path and args.kind not in (None, "files"):
        raise ConfigError("--path is a part of the files: it goes with --kind files only")
    if args.table and (args.kind not in (None, "db") or args.time or args.path):
        raise ConfigError("--table is a part of the database: it goes with --kind db, and --at or --date "
                          "(not --time, yet)")
    args.kind = args.kind or ("files" if args.path else "db" if args.table else "all")
    if retired and (problem := in_place_problem(site.name, args.kind, args.to_database, args.to_path)):
        raise ConfigError(problem)
    if args.path:
        from wpfarm_assets.backups.restore import validate_member_path

        validate_member_path(args.path, Path(site.content_path).name)
    if args.date:
        parse_date(args.date)
    if args.as_of and args.source != "offsite":
        raise ConfigError("--as-of is a time of the off-site copy: it goes with --from offsite")
    if args.source == "offsite":
        from wpfarm_assets.backups.pitr import parse_time

        if config.backup.offsite is None:
            raise ConfigError("--from offsite: no off-site copy is configured (backup.offsite in farm.yaml)")
        if args.time:
            raise ConfigError("--time replays binary logs from the primary target: from the copy, use --at or --date")
        if args.as_of:
            parse_time(args.as_of, "--as-of")
    if args.to_database:
        validate_identifier(args.to_database)
    if args.to_path:
        validate_absolute_path(args.to_path)
    if args.time:
        from wpfarm_assets.backups.pitr import parse_time

        if args.date or args.at:
            raise ConfigError("--time, --date and --at each choose what to restore: give one")
        if args.path:
            raise ConfigError("--time restores the database to a second: --path is for a files backup (use --at)")
        parse_time(args.time)
    if args.at:
        if args.kind == "all":
            raise ConfigError("--at names one backup, of one kind: add --kind db or --kind files "
                              "(a site's database and files backups have stamps of their own)")
        parse_at(args.at)
    if problem := config.restore_target_problem(site, args.to_database, args.to_path):
        if not args.force:
            raise ConfigError(f"{problem}; refused (add --force to do it anyway)")
        print(f"wpfarm: {problem}; going on: --force", file=sys.stderr)
    op_config = {
        "force": args.force,
        "site": args.site,
        "kind": args.kind,
        "date": args.date,
        "at": args.at,
        "time": args.time,
        "to_database": args.to_database,
        "to_path": args.to_path,
        "path": args.path,
        "gnupg_home": args.gnupg_home,
        "tables": args.table,
        "source": args.source,
        "as_of": args.as_of,
        "checkpoint": args.checkpoint,
    }
    result = run_job("restore_site", config, instance(), args.site,
                     run_config={"ops": {"restore_site_op": {"config": op_config}}})
    if not result.success:
        return 1
    for kind, restored in result.output_for_node("restore_site_op").items():
        for refusal in restored["refused"]:
            print(f"{args.site}: {kind} backup {refusal}: refused", file=sys.stderr)
        if restored["checkpoint"]:
            keyring = f" --gnupg-home {args.gnupg_home}" if args.gnupg_home else ""
            print(f"{args.site}: {kind} checkpoint {restored['checkpoint']} taken first (kept 7 days); to undo: "
                  f"wpfarm restore {args.site} --kind {kind} --at {restored['checkpoint']}{keyring}")
        elif not args.checkpoint:
            print(f"{args.site}: no {kind} checkpoint taken (--no-checkpoint): this restore cannot be undone")
        where = restored.get("database") or restored.get("path")
        if "transactions_replayed" in restored:
            print(f"{args.site}: {kind} restored into {where} as of {restored['time']:%Y-%m-%d %H:%M:%S} UTC: "
                  f"{restored['dump']} (GTID {restored['dump_gtid']}) and {restored['transactions_replayed']} "
                  f"transaction(s) from {len(restored['binlogs'])} archived binary log(s)")
        elif "tables" in restored:
            print(f"{args.site}: table(s) {', '.join(restored['tables'])} restored into {where} from "
                  f"{restored['backup']} (swapped in at once; every other table untouched)")
        else:
            origin = f" (the off-site copy as of {args.as_of or 'now'})" if args.source == "offsite" else ""
            print(f"{args.site}: {kind} restored into {where} from {restored['backup']}{origin}")
    return 0


def backups(args: argparse.Namespace, config: FarmConfig) -> int:
    """Every restore point of a site, per kind, newest first, with its state: `ok` (listed at the
    size its manifest says; with --verify, read whole and its sha256 compared; a snapshot: in its
    repository, STORED BYTES being what it added), `REFUSED` (a
    restore or check found it bad), `FUTURE` (stamped ahead of now: never chosen). Exit 1 if any is not ok."""
    from wpfarm_assets.backups.health import group_listing
    from wpfarm_assets.backups.retired import site_or_retired
    from wpfarm_assets.backups.verify import record_refusal, verify_backup

    store = store_of(config)
    _, retired = site_or_retired(config, store, args.site)
    if retired:
        print(f"{args.site} is retired (not in the farm configuration): its backups are kept "
              f"{config.retention.retired_days} days after it left (wpfarm status)")
    entry = group_listing(list(store.list(site_root(args.site)))).get(args.site)
    now = datetime.now(timezone.utc)
    bad = 0
    print("KIND   STAMP              STORED BYTES  STATE     DETAIL")
    for kind in KINDS:
        keys = sorted(entry.backups[kind] + entry.checkpoints[kind]) if entry else []
        _, future = split_future(keys, now)
        for key in reversed(keys):
            stored, manifest = entry.objects.get(key.data_key), None
            if key in future:
                state, detail = "FUTURE", "stamped ahead of this machine's clock: never chosen"
            else:
                manifest, detail = verify_backup(store, key, listed_size=stored.size if stored else None, read=args.verify,
                                                 snapshots=snapshot_ids(entry.objects, args.site))
                if detail and args.verify:
                    record_refusal(store, key, detail)
                state = "REFUSED" if detail or key in entry.refused else "ok"
                detail = detail or ("refused earlier: " + store.get_bytes(key.refusal_key).decode(errors="replace")
                                    if key in entry.refused else "snapshot in the repository" if manifest.is_snapshot
                                    else "sha256 verified" if args.verify else "size matches")
            if key in (entry.checkpoints[kind] if entry else []):  # restored only by its stamp (--at)
                detail = f"checkpoint before a restore (kept 7 days; --at {key.stamp}); {detail}"
            bad += state != "ok"
            size = f"{stored.size:,}" if stored else f"+{manifest.stored_bytes:,}" if manifest and manifest.is_snapshot else "-"
            print(f"{kind:5}  {key.stamp}  {size:>12}  {state:8}  {detail}")
    print(f"\n{sum(len(entry.backups[k]) for k in KINDS) if entry else 0} restore points, {bad} not ok")
    return 1 if bad else 0
