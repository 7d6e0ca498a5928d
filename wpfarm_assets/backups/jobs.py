"""Jobs: back up any set of sites (asset job over the `sites` partitions) and restore one site."""


from collections.abc import Callable
from datetime import date, datetime, timezone

import dagster as dg

from resources.gpg import GPGResource
from resources.mariadb import MariaDBResource, NodeError
from resources.object_store import AsOfStore, ObjectStoreResource, StoreError
from resources.restic import Repository, site_password
from resources.ssh import LocalRunner, NodeResource
from wpfarm_assets.backups.assets import (
    backup_inventory,
    binlog_archive,
    database_dump,
    file_archive,
    offsite_copy,
    restore_drill,
    retention,
    retired_sites,
)
from wpfarm_assets.backups.backup import (
    Backup,
    back_up_database,
    back_up_files,
    clear_restoring,
    mark_restoring,
    restoring,
)
from wpfarm_assets.backups.checks import (
    backup_age_check,
    backup_integrity_check,
    binlog_archive_check,
    database_dump_age_check,
    farm_key_check,
    file_archive_age_check,
    restore_drill_check,
)
from wpfarm_assets.backups.clone import clone_site
from wpfarm_assets.backups.offsite import (
    OffsiteError,
    materialize_repository,
    scratch_repository_dir,
)
from wpfarm_assets.backups.pitr import PitrError, newest_before, parse_time, restore_to_time
from wpfarm_assets.backups.restore import restore_database, restore_files
from wpfarm_assets.backups.retired import in_place_problem, site_or_retired
from wpfarm_assets.core.config import ConfigError, FarmConfig
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import BackupKey

back_up_sites_job = dg.define_asset_job(
    "back_up_sites",
    # Without their backup_age checks: those run hourly (check_backup_health); in a backup run they
    # would only be skipped (the backup steps have no output), hiding the last real result.
    selection=dg.AssetSelection.assets(database_dump, file_archive).without_checks(),
    description="Back up the database and files of the selected sites (one run covers many sites).",
)

apply_retention_job = dg.define_asset_job(
    "apply_retention",
    selection=[retention],
    description="Keep each selected site's 14 daily / 26 weekly / 12 monthly backups; delete the rest.",
)

copy_offsite_job = dg.define_asset_job(
    "copy_offsite",
    selection=dg.AssetSelection.assets(offsite_copy).without_checks(),  # its check runs hourly (check_backup_health)
    description="Copy the selected sites' new backups to the off-site target (backup.offsite), each object locked.",
)

drill_sites_job = dg.define_asset_job(
    "drill_sites",
    selection=[restore_drill],
    description="Restore the selected sites' newest backups into scratch space, prove them, measure the RTO.",
)

check_backup_health_job = dg.define_asset_job(
    "check_backup_health",
    selection=dg.AssetSelection.assets(retired_sites, backup_inventory).without_checks()
    | dg.AssetSelection.checks(backup_age_check, restore_drill_check, database_dump_age_check, file_archive_age_check,
                              farm_key_check)
    | dg.AssetSelection.checks_for_assets(offsite_copy),  # when backup.offsite is set
    description="Retired sites (kept, then deleted), the backup inventory, every site's backup age and last restore "
                "drill, the farm key, the off-site copy's lag and lock "
                "(alerts fire and resolve).",
)

archive_binlogs_job = dg.define_asset_job(
    "archive_binlogs",
    selection=dg.AssetSelection.assets(binlog_archive) | dg.AssetSelection.checks(binlog_archive_check),
    description="Archive the binary logs written since the last run (point-in-time recovery) and check the "
                "archive's age and gaps (alerts fire and resolve).",
)

verify_backups_job = dg.define_asset_job(
    "verify_backups",
    selection=dg.AssetSelection.checks(backup_integrity_check),
    description="Re-read every site's newest backups and compare them with their manifests (alerts).",
)


class RestoreSiteConfig(dg.Config):
    site: str
    kind: str = "all"  # all | db | files
    date: str | None = None  # YYYY-MM-DD: newest good backup of that UTC day; default newest overall
    at: str | None = None  # yyyymmddThhmmssZ: exactly this backup
    to_database: str | None = None  # default: the site's own database (in place)
    time: str | None = None  # ISO 8601 UTC (2026-12-07T14:32:05Z): the site as it was at that second
    to_path: str | None = None  # default: the site root (in place)
    path: str | None = None  # files only: just this part, relative to the site root (wp-content/uploads/2026)
    gnupg_home: str | None = None  # keyring with the farm's private key; default $GNUPGHOME
    force: bool = False  # restore even into another site's database or folder, or a system directory
    tables: list[str] | None = None  # db only: just these tables, each swapped in atomically; the others untouched
    source: str = "primary"  # primary | offsite: from the off-site copy (backup.offsite)
    as_of: str | None = None  # offsite only, ISO 8601 UTC: the copy as it was then (later deletions ignored)
    checkpoint: bool = True  # in place: first back up what is about to be overwritten (kept 7 days), to undo it


@dg.op
def restore_site_op(
    context: dg.OpExecutionContext,
    config: RestoreSiteConfig,
    farm: dg.ResourceParam[FarmConfig],
    mariadb: MariaDBResource,
    database_node: NodeResource,
    storage_node: NodeResource,
    object_store: ObjectStoreResource,
    gpg: GPGResource,
) -> dict:
    if config.kind not in ("all", "db", "files"):
        raise dg.Failure(f"kind must be all, db or files, not {config.kind!r}")
    store = object_store.store()
    try:
        site, retired = site_or_retired(farm, store, config.site)
    except ConfigError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    if retired and (problem := in_place_problem(site.name, config.kind, config.to_database, config.to_path)):
        raise dg.Failure(problem, allow_retries=False)
    problem = farm.restore_target_problem(site, config.to_database, config.to_path)
    if config.path and config.kind != "files":
        raise dg.Failure("path is a part of the files: set kind to files", allow_retries=False)
    if config.at and config.kind == "all":
        raise dg.Failure("at names one backup, of one kind: set kind to db or files", allow_retries=False)
    if problem and not config.force:
        raise dg.Failure(f"{problem}; refused (set force to do it anyway)", allow_retries=False)
    if config.tables and (config.kind != "db" or config.time):
        raise dg.Failure("tables are a part of the database: set kind to db (and date or at, not time)",
                         allow_retries=False)
    if config.time and (config.date or config.at):
        raise dg.Failure("time, date and at each choose what to restore: set one", allow_retries=False)
    on = date.fromisoformat(config.date) if config.date else None
    restored = {}
    source, scratch = offsite_source(config, farm, site, storage_node) if config.source != "primary" else (store, None)

    marked: set[str] = set()  # the kinds whose interrupted-restore record this run wrote

    def live(kind: str):
        """In place, from its first write on, a killed restore leaves the site half-restored: record
        that (keeping an earlier run's record; a table swap is atomic and needs none)."""
        in_place = not config.to_database or config.to_database == site.database if kind == "db" else not config.to_path
        if not in_place or (kind == "db" and config.tables):
            return None

        def mark() -> None:
            try:
                if restoring(store, site.name, kind) is None:
                    mark_restoring(store, site.name, kind, context.run.run_id)
                    marked.add(kind)
            except StoreError as exc:
                if config.source == "primary":
                    raise
                # From the copy after losing the primary: the restore goes on, unrecorded.
                context.log.warning(f"{site.name}: the interrupted-restore record cannot be written: {exc}")
        return mark

    def completed(kind: str) -> None:
        """A whole restore makes the site's `kind` whole again (also after an earlier one was interrupted);
        a part of it (path, tables) clears only the record it wrote itself."""
        if kind in marked or (live(kind) and not config.path and not config.tables and config.source == "primary"):
            clear_restoring(store, site.name, kind)
    checkpoints: dict[str, str] = {}
    pending: dict[str, tuple[Callable[[], bool], Callable[[datetime], Backup]]] = {}  # kind -> (there, take)

    def before_writing(kind: str, there: Callable[[], bool], take: Callable[[datetime], Backup]):
        """What runs once the restore has chosen and checked its backup, just before it first writes:
        in place, the checkpoints of every kind this restore overwrites (all before its first write:
        a backup of what is about to be overwritten, its `.checkpoint` marker written first, so that
        a kill never leaves it an ordinary restore point; kept 7 days outside the tiers: `--at` its
        stamp undoes the restore), none of a half-restored site or of a database or folder that is
        not `there`; then the interrupted-restore record (live)."""
        mark = live(kind)
        in_place = not config.to_database or config.to_database == site.database if kind == "db" else not config.to_path
        if config.checkpoint and in_place:
            pending[kind] = (there, take)

        def touching() -> None:
            while pending:
                taken, (is_there, taker) = pending.popitem()
                take_checkpoint(taken, is_there, taker)
            if mark:
                mark()
        return touching

    def take_checkpoint(kind: str, there: Callable[[], bool], take: Callable[[datetime], Backup]) -> None:
        try:
            if not there():
                context.log.info(f"{site.name}: no {kind} checkpoint: there is nothing to overwrite")
                return
            if restoring(store, site.name, kind) is not None:
                context.log.warning(f"{site.name}: no {kind} checkpoint: an earlier restore did not complete, the "
                                    "site may be half-restored")
                return
            now = datetime.now(timezone.utc).replace(microsecond=0)
            store.put_bytes(BackupKey(site.name, kind, now).checkpoint_key,
                            f"taken before restore run {context.run.run_id}".encode())
            backup = take(now)
        except WpfarmError as exc:
            raise dg.Failure(f"{site.name}: the checkpoint before the restore failed, nothing was restored: {exc} "
                             "(restore without one: --no-checkpoint)", allow_retries=False) from None
        checkpoints[kind] = backup.key.stamp
        context.log.info(f"{site.name}: checkpoint {kind} {backup.key.stamp} taken (undo: --kind {kind} --at "
                         f"{backup.key.stamp})")

    at = config.at
    try:
        t = parse_time(config.time) if config.time else None
        if t is not None and config.kind in ("all", "files"):  # before the database is touched
            at = newest_before(store, site.name, "files", t).stamp
        if config.kind in ("all", "files"):  # its checkpoint is taken with the database's, before either is written
            runner = storage_node.runner()
            touching_files = before_writing("files", lambda: runner.exists(site.content_path), lambda now: back_up_files(
                site, runner, store, object_store.repository(site.name, runner), now=now,
                max_file_bytes=farm.backup.max_file_bytes))
        if config.kind in ("all", "db"):
            db, server, passed = mariadb.source(database_node.runner(), farm.database.galera_nodes)
            for reason in passed:
                context.log.warning(f"passed over {reason}")
            touching_db = before_writing("db", lambda: db.database_exists(site.database), lambda now: back_up_database(
                site, db, store, gpg.encrypt_argv(), gpg.fingerprint(), now=now, server=server))
            if t is not None:
                restored["db"] = restore_to_time(site, source, db, config.gnupg_home, t, config.to_database,
                                                 config.force, farm_databases=farm.databases, touching=touching_db)
                context.log.info(f"{site.name}: database restored to {t.isoformat()}: {restored['db']['dump']} and "
                                 f"{restored['db']['transactions_replayed']} transactions of "
                                 f"{len(restored['db']['binlogs'])} binary log(s)")
            else:
                restored["db"] = restore_database(site, source, db, config.gnupg_home, config.to_database, on, at,
                                                  config.force, touching=touching_db, tables=config.tables)
                context.log.info(f"{site.name}: database restored from {restored['db']['backup']}")
            completed("db")
        if config.kind in ("all", "files"):
            repository = object_store.repository(site.name, runner) if scratch is None else Repository(
                runner, str(materialize_repository(source, site.name, scratch.name)),
                site_password(object_store.restic_password, site.name) if object_store.restic_password else None)
            restored["files"] = restore_files(site, source, runner, config.gnupg_home, config.to_path, on, at,
                                              repository, config.path, touching=touching_files)
            context.log.info(f"{site.name}: files restored from {restored['files']['backup']}")
            completed("files")
    except (PitrError, NodeError, OffsiteError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    finally:
        if scratch is not None:
            scratch.cleanup()
    for kind, r in restored.items():
        r.pop("manifest")
        r["checkpoint"] = checkpoints.get(kind)
    context.add_output_metadata({
        kind: dg.MetadataValue.json({k: str(v) for k, v in r.items()}) for kind, r in restored.items()
    })
    return restored


def offsite_source(config: RestoreSiteConfig, farm: FarmConfig, site, storage_node: NodeResource):
    """(the off-site copy as of config.as_of (default now), a scratch folder for its restic repository)."""
    from wpfarm_assets.definitions import initialized  # (definitions imports this module)

    if config.source != "offsite":
        raise dg.Failure(f"source must be primary or offsite, not {config.source!r}", allow_retries=False)
    if farm.backup.offsite is None:
        raise dg.Failure("no off-site copy is configured (backup.offsite)", allow_retries=False)
    if config.time:
        raise dg.Failure("time (binary logs) restores from the primary target only; from the copy: date or at",
                         allow_retries=False)
    if config.kind != "db" and not isinstance(storage_node.runner(), LocalRunner):
        raise dg.Failure("files from the off-site copy are restored on this machine: storage.ssh is set; restore "
                         "with to_path here, or `wpfarm offsite recover` first", allow_retries=False)
    try:
        as_of = parse_time(config.as_of, "as_of") if config.as_of else datetime.now(timezone.utc)
        copy = initialized(farm, "offsite").store()
    except WpfarmError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return AsOfStore(copy, as_of), scratch_repository_dir() if config.kind != "db" else None


class CloneSiteConfig(dg.Config):
    site: str  # the site to clone (only read)
    name: str  # the clone's name and address (NEW_NAME)
    date: str | None = None  # YYYY-MM-DD: from the newest good backups of that UTC day
    at: str | None = None  # yyyymmddThhmmssZ: from this database backup
    time: str | None = None  # ISO 8601 UTC: the database as it was at that second (binary logs)
    database: str | None = None  # default: derived from the name, as `wpfarm site create` does
    content_path: str | None = None  # default: <provisioning.sites_root>/<name>/wp-content
    url: str | None = None  # default: http(s)://<name>, the site's scheme
    gnupg_home: str | None = None  # keyring with the farm's private key; default $GNUPGHOME


@dg.op
def clone_site_op(context: dg.OpExecutionContext, config: CloneSiteConfig, farm: dg.ResourceParam[FarmConfig],
                  mariadb: MariaDBResource, database_node: NodeResource, storage_node: NodeResource,
                  object_store: ObjectStoreResource) -> dict:
    """A staging clone at a new address (backups/clone.py): its files where the sites' are (the
    storage node), its database through the database tier's client, as restore_site does."""
    runner, store = storage_node.runner(), object_store.store()
    if config.time and (config.date or config.at):
        raise dg.Failure("time, date and at each choose what to clone: set one", allow_retries=False)
    try:
        site, _ = site_or_retired(farm, store, config.site)
        db = mariadb.client(database_node.runner())
        record = clone_site(farm, site, store, db, runner, object_store.repository(site.name, runner),
                            config.gnupg_home, config.name, config.database, config.content_path, config.url,
                            date.fromisoformat(config.date) if config.date else None, config.at,
                            parse_time(config.time) if config.time else None)
    except (WpfarmError, ValueError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    context.add_output_metadata({"clone": record["name"], "url": record["url"], "database": record["database"],
                                 "content_path": record["content_path"],
                                 "rows_changed": dg.MetadataValue.json(record["rows_changed"]),
                                 "left_alone": record["left_alone"], "rewrite_seconds": record["rewrite_seconds"]})
    return record


@dg.job(name="clone_site", description="A staging clone of one site at a new address: its backup restored into a new "
        "database and folder, every address rewritten (serialized-safe), blog_public 0. `wpfarm clone --delete` "
        "removes it.")
def clone_site_job():
    clone_site_op()


@dg.job(description="Restore one site's database and/or files from its newest (or a given day's) backup.")
def restore_site():
    restore_site_op()
