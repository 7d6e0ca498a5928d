"""`wpfarm`: the few operator commands typed at 3 a.m. They run the same Dagster assets and jobs
against the instance in $DAGSTER_HOME, so everything they do shows in the web UI. One parser
(arguments.py), one module per group of commands:

    backup.py    wpfarm backup [SITE ...] [--failed] | drill [SITE ...] | binlogs | offsite copy|recover
    restore.py   wpfarm restore SITE [--date D | --at STAMP | --time T] [--to-database NAME] [--to-path DIR]
                        [--kind all|db|files] [--table NAME ...] [--path PART] [--from offsite --as-of T]
                        [--no-checkpoint] | backups SITE [--verify]
    copies.py    wpfarm clone SITE NEW_NAME | clone --delete NAME | export SITE --to FILE
                 | files SITE ls [PATH] | cat PATH [--at STAMP]
    status.py    wpfarm status
    farm.py      wpfarm demo [--sites N] | site create NAME | provision [--apply] [--step S]
    runs.py      how they run: the instance, jobs run in this process as the daemon would, the stores
"""

from __future__ import annotations

import os
import sys

from wpfarm_assets.cli.arguments import parser
from wpfarm_assets.cli.backup import backup, binlogs, drill, offsite
from wpfarm_assets.cli.copies import clone, export, files
from wpfarm_assets.cli.farm import demo, provision, site_create
from wpfarm_assets.cli.restore import backups, restore
from wpfarm_assets.cli.runs import instance, object_store_of, run_job, store_of, sync_partitions
from wpfarm_assets.cli.status import status
from wpfarm_assets.core.config import ConfigError, load_config
from wpfarm_assets.core.errors import WpfarmError


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args)
        config = load_config()
        if args.command == "status":
            return status(config)
        if args.command == "binlogs":
            return binlogs(config)
        if args.command == "drill":
            return drill(args.sites, config)
        if args.command == "backups":
            return backups(args, config)
        if args.command == "files":
            if args.action == "cat" and not args.path:
                raise ConfigError("files cat needs a PATH: a file of the backup, e.g. wp-config.php")
            return files(args, config)
        if args.command == "site":
            return site_create(args, config)
        if args.command == "provision":
            return provision(args, config)
        if args.command == "offsite":
            return offsite(args, config)
        if args.command == "export":
            return export(args, config)
        if args.command == "clone":
            return clone(args, config)
        return backup(args.sites, config, args.failed) if args.command == "backup" else restore(args, config)
    except WpfarmError as exc:  # meant for the operator: one line; anything else is a bug and keeps its traceback
        print(f"wpfarm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wpfarm: interrupted; the current run is marked failed", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `wpfarm status | head`: the reader left; no traceback, no error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


__all__ = ["instance", "main", "object_store_of", "parser", "run_job", "store_of", "sync_partitions"]
