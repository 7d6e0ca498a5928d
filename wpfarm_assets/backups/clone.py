"""A staging clone of a site at a new address (`wpfarm clone`): its backup restored into a new
database and folder, then every address of the site rewritten to the clone's in every table of its
table prefix (core/serialized.py: PHP-serialized values decoded and encoded again), `guid` columns
left alone (WordPress's own advice: they are identifiers, not links), search engines told to stay
away (`blog_public` 0), and wp-config.php pointed at the clone's database. The production site is
only read. A clone is recorded in the store as `clones/<name>.json` (which site, when, where), not in
farm.yaml: it is not backed up, drilled or retired; `wpfarm clone --delete` removes it, and
nothing that is not a clone.
"""

from __future__ import annotations

import json
import re
import time
from datetime import date, datetime, timezone
from urllib.parse import urlsplit

from resources.mariadb import MariaDB
from resources.object_store import Store, StoreError, exists
from resources.restic import Repository
from resources.ssh import Runner, run
from wpfarm_assets.backups.identity import host, table_prefix
from wpfarm_assets.backups.pitr import newest_before, restore_to_time
from wpfarm_assets.backups.restore import nearest_backup, restore_database, restore_files
from wpfarm_assets.core.config import FarmConfig, Site, validate_content_path, validate_identifier, validate_site_name
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import CLONES, clone_record_key
from wpfarm_assets.core.serialized import LOOKS_SERIALIZED_SQL, Addresses, rewrite_value

TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")
INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


class CloneError(WpfarmError):
    """A clone refused or failed; the message says why."""


def clone_target(config: FarmConfig, name: str, database: str | None, content_path: str | None) -> tuple[str, str]:
    """The clone's database and content folder: as given, or derived from its name (validated)."""
    from wpfarm_assets.provisioning.plans import default_database_name

    validate_site_name(name)
    return (validate_identifier(database or default_database_name(name)),
            validate_content_path(content_path or f"{config.provisioning.sites_root}/{name}/wp-content"))


def clone_problem(config: FarmConfig, store: Store, db: MariaDB, runner: Runner, name: str, database: str,
                  content_path: str) -> str | None:
    """Why the clone cannot go there: a name, database or folder that is a site's (or a clone's),
    or a database or folder that exists already. No --force for this one."""
    if any(s.name == name for s in config.sites):
        return f"{name} is a site of the farm"
    if exists(store, clone_record_key(name)):
        return f"{name} is a clone already (wpfarm clone --delete {name} first)"
    if database in config.databases or db.database_exists(database):
        return f"database {database} exists" + (" and is a site's" if database in config.databases else "")
    root = content_path.rsplit("/", 1)[0]
    for s in config.sites:  # neither inside a site's folder nor around one
        if root == s.root or root.startswith(f"{s.root}/") or s.root.startswith(f"{root}/"):
            return f"folder {root} overlaps {s.name}'s ({s.root})"
    if runner.exists(root):
        return f"folder {root} exists"
    return None


def clone_url(url: str | None, name: str, scheme: str) -> str:
    """The clone's address: `url` (http(s)://host[:port], nothing after it), or scheme://name."""
    if url is None:
        return f"{scheme}://{name}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise CloneError(f"--url {url!r}: give the clone's address as http(s)://host[:port]")
    return url.rstrip("/")


def sql_literal(value: bytes) -> str:
    """A text literal that compares with a column of any utf8mb4 collation (WordPress's tables are
    utf8mb4_unicode_520_ci): byte-exact, its collation explicit."""
    return f"CONVERT(X'{value.hex()}' USING utf8mb4) COLLATE utf8mb4_bin"


def sql_rewrite(expression: str, addresses: Addresses) -> str:
    """`expression` with every address rewritten, in SQL: the same patterns, through MariaDB's
    REGEXP_REPLACE (PCRE; a backslash in its replacement is doubled)."""
    for pattern, replacement in addresses.rules():
        escaped = replacement.replace(b"\\", b"\\\\")
        expression = f"REGEXP_REPLACE({expression}, {sql_literal(b'(?i)' + pattern)}, {sql_literal(escaped)})"
    return expression


def rewrite_database(db: MariaDB, database: str, addresses: Addresses) -> dict:
    """Rewrite every address in the text columns of the site's base tables (those of its table
    prefix; `guid` left alone). A row is updated by its primary key when the table has an integer
    one (WordPress's tables do); else each distinct value is updated where the column holds exactly
    it (tables without a primary key). Returns the rows changed per table and the values left alone
    because they looked serialized and did not decode."""
    quoted = "`" + database.replace("`", "``") + "`"
    prefix = table_prefix(db.row_counts(database) or {})
    if prefix is None:
        raise CloneError(f"{database} holds no WordPress tables: nothing to rewrite")
    columns = [(bytes.fromhex(t).decode(), bytes.fromhex(c).decode()) for t, c in db.query(
        "SELECT HEX(c.TABLE_NAME), HEX(c.COLUMN_NAME) FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
        "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME AND t.TABLE_TYPE = 'BASE TABLE' "
        f"WHERE c.TABLE_SCHEMA = '{database}' AND c.DATA_TYPE IN ({', '.join(repr(t) for t in TEXT_TYPES)}) "
        "AND c.COLUMN_NAME <> 'guid'")]
    keys: dict[str, list[tuple[str, str]]] = {}
    for t, c, kind in db.query("SELECT HEX(k.TABLE_NAME), HEX(k.COLUMN_NAME), c.DATA_TYPE FROM "
                               "information_schema.KEY_COLUMN_USAGE k JOIN information_schema.COLUMNS c ON "
                               "c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME AND "
                               f"c.COLUMN_NAME = k.COLUMN_NAME WHERE k.TABLE_SCHEMA = '{database}' AND "
                               "k.CONSTRAINT_NAME = 'PRIMARY' ORDER BY k.ORDINAL_POSITION"):
        keys.setdefault(bytes.fromhex(t).decode(), []).append((bytes.fromhex(c).decode(), kind))
    replace = addresses.rewriter()
    like = " OR ".join(f"{{col}} LIKE '%{h}%'" for h in addresses.old_hosts)  # hosts: DNS names only (clone_site)
    name = lambda n: "`" + n.replace("`", "``") + "`"  # noqa: E731
    serialized = f"{{col}} REGEXP {sql_literal(LOOKS_SERIALIZED_SQL.encode())}"
    statements, changed, broken = [], {}, 0
    by_table: dict[str, list[str]] = {}
    for table, column in columns:
        if table.startswith(prefix):
            by_table.setdefault(table, []).append(column)
    holding = []  # (table, column) that hold an address at all: one scan of each table finds them
    for table, cols in by_table.items():
        counts = db.query(f"SELECT {', '.join(f'SUM({like.format(col=name(c))})' for c in cols)} FROM "
                          f"{quoted}.{name(table)}")[0]
        holding += [(table, c) for c, n in zip(cols, counts, strict=True) if n not in ("NULL", "0")]
    for table, column in holding:
        col, target = name(column), f"{quoted}.{name(table)}"
        # Plain text (post content, comments, most of the rows): rewritten in the server, by the
        # same patterns as below (REGEXP_REPLACE is PCRE; a backslash in a replacement is doubled).
        count = db.query(f"UPDATE {target} SET {col} = {sql_rewrite(col, addresses)} WHERE ({like.format(col=col)}) AND NOT "
                         f"{serialized.format(col=col)}; SELECT ROW_COUNT()")
        if rows := int(count[-1][0]):
            changed[table] = changed.get(table, 0) + rows
        # Serialized data: decoded, rewritten and encoded again here.
        pk = keys.get(table, [])
        by_key = bool(pk) and all(kind in INTEGER_TYPES for _, kind in pk)
        picked = ", ".join(name(k) for k, _ in pk) if by_key else "COUNT(*)"
        grouping = "" if by_key else f" GROUP BY BINARY {col}"
        for row in db.query(f"SELECT HEX({col}), {picked} FROM {target} WHERE ({like.format(col=col)}) AND "
                            f"{serialized.format(col=col)}{grouping}"):
            old = bytes.fromhex(row[0])
            new = rewrite_value(old, replace)
            broken += new.broken
            if new.value == old:
                continue
            if by_key:
                where = " AND ".join(f"{name(k)} = {int(v)}" for (k, _), v in zip(pk, row[1:], strict=True))
                changed[table] = changed.get(table, 0) + 1
            else:
                where = f"BINARY {col} = X'{row[0]}'"
                changed[table] = changed.get(table, 0) + int(row[1])
            statements.append(f"UPDATE {target} SET {col} = X'{new.value.hex()}' WHERE {where};")
    options = f"{quoted}.`{prefix}options`"
    statements += [f"UPDATE {options} SET option_value = '0' WHERE option_name = 'blog_public';",
                   f"INSERT INTO {options} (option_name, option_value, autoload) SELECT 'blog_public', '0', 'yes' "
                   f"FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM {options} WHERE option_name = 'blog_public');"]
    client = db.load(database)
    client.write("\n".join(statements).encode() + b"\n")
    client.close_stdin()
    if (status := client.wait()) != 0:
        raise CloneError(f"rewriting the addresses in {database} failed (status {status}): {client.stderr_tail()}")
    return {"rows_changed": changed, "left_alone": broken}


def clone_site(config: FarmConfig, site: Site, store: Store, db: MariaDB, runner: Runner, repository: Repository,
               gnupg_home: str | None, name: str, database: str | None = None, content_path: str | None = None,
               url: str | None = None, on: date | None = None, at: str | None = None,
               to_time: datetime | None = None) -> dict:
    """Restore `site`'s backup (the newest, of day `on`, stamped `at`, or the database as it was at
    `to_time` from the binary-log archive) as the clone `name` (see the module's doc)."""
    database, content_path = clone_target(config, name, database, content_path)
    if problem := clone_problem(config, store, db, runner, name, database, content_path):
        raise CloneError(f"clone {name} of {site.name}: {problem}; refused")
    clone_url(url, name, "http")  # a wrong --url is refused before anything is written
    started = datetime.now(timezone.utc)
    root = content_path.rsplit("/", 1)[0]
    record = {"name": name, "clone_of": site.name, "database": database, "content_path": content_path,
              "created_at": started.isoformat(), "state": "being made"}
    store.put_bytes(clone_record_key(name), json.dumps(record).encode())  # first: --delete finds what a kill left
    try:
        if to_time is not None:
            restored = restore_to_time(site, store, db, gnupg_home, to_time, to_database=database,
                                       farm_databases=config.databases)
        else:
            restored = restore_database(site, store, db, gnupg_home, to_database=database, on=on, at=at)
        manifest = restored["manifest"]
        scheme = manifest.siteurl.split("://")[0] if "://" in (manifest.siteurl or "") else "http"
        new_url = clone_url(url, name, scheme)
        old = {site.name, f"www.{site.name}", *(host(a) for a in [*(manifest.site_addresses or []), *site.addresses,
                                                                 *(a for a in (manifest.siteurl, manifest.home) if a)])}
        old = tuple(sorted(h for h in old if h and _HOST.match(h) and h != host(new_url)))  # DNS names only: SQL-safe
        addresses = Addresses(old, new_url)
        rewriting = time.monotonic()
        rewritten = rewrite_database(db, database, addresses)
        rewrite_seconds = time.monotonic() - rewriting
        files_at = (newest_before(store, site.name, "files", to_time).stamp if to_time is not None  # that night's
                    else nearest_backup(store, site.name, "files", restored["backup_time"]).stamp if at else None)
        files = restore_files(site, store, runner, gnupg_home, to_path=root, on=on, at=files_at, repository=repository)
        _point_config(runner, f"{root}/wp-config.php", database, addresses)
    except BaseException:
        db.drop_database(database)  # nothing of a clone that did not complete is left
        run(runner, ["rm", "-rf", "--one-file-system", "--", root])
        store.delete([clone_record_key(name)])
        raise
    record.update(state="ready", url=new_url, database_backup=restored["backup"], files_backup=files["backup"],
                  rows_changed=rewritten["rows_changed"], left_alone=rewritten["left_alone"], old_hosts=list(old),
                  rewrite_seconds=round(rewrite_seconds, 2))
    store.put_bytes(clone_record_key(name), json.dumps(record, indent=1).encode())
    return record



def _point_config(runner: Runner, path: str, database: str, addresses: Addresses) -> None:
    """wp-config.php: DB_NAME set to the clone's database, the site's addresses rewritten."""
    if not runner.exists(path):
        return
    text = run(runner, ["cat", "--", path]).encode()
    text = re.sub(rb"""(define\s*\(\s*['"]DB_NAME['"]\s*,\s*)(['"]).*?\2""",
                  lambda m: m[1] + m[2] + database.encode() + m[2], text)
    proc = runner.start(["sh", "-c", 'cat > "$1"', "sh", path], stdin=True)
    proc.write(addresses.rewriter()(text))
    proc.close_stdin()
    if proc.wait() != 0:
        raise CloneError(f"cannot write {path}: {proc.stderr_tail()}")


def clones(store: Store) -> list[dict]:
    """Every clone recorded in the store."""
    return [json.loads(store.get_bytes(o.key)) for o in store.list(CLONES) if o.key.endswith(".json")]


def delete_clone(store: Store, db: MariaDB, runner: Runner, config: FarmConfig, name: str) -> dict:
    """Remove a clone: its database, its folder, its record. Refuses anything that is not a clone."""
    validate_site_name(name)
    try:
        record = json.loads(store.get_bytes(clone_record_key(name)))
    except StoreError:
        raise CloneError(f"{name} is not a clone (no {clone_record_key(name)}): refused") from None
    if record["database"] in config.databases or any(s.name == name for s in config.sites):
        raise CloneError(f"{name}'s database {record['database']} is a site's: refused")
    db.drop_database(validate_identifier(record["database"]))
    root = validate_content_path(record["content_path"]).rsplit("/", 1)[0]
    run(runner, ["rm", "-rf", "--one-file-system", "--", root])
    store.delete([clone_record_key(name)])
    return record
