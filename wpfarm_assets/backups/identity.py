"""Which site a database belongs to. WordPress keeps its address in the options table (`siteurl`,
`home`): every dump's manifest records them, with the addresses known to be the site's. A dump
whose address is neither its site's name nor what the site said before is flagged (a site pointed
at another site's database after a farm.yaml edit backs up the wrong site and looks healthy), and a
restore into a database that holds another site's address asks for --force.

The flag is an object beside the dump (`<stamp>.identity`, its text the reason), so the age check
and `wpfarm status` find it in the listing they already make and read only the rare flagged ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from resources.mariadb import MariaDB
from resources.object_store import Store
from wpfarm_assets.core.keys import BackupKey

CORE_TABLES = ("options", "posts", "users")  # WordPress tables every site has, after its table prefix
ADDRESS_OPTIONS = ("siteurl", "home")


def table_prefix(tables: Iterable[str]) -> str | None:
    """The site's table prefix: the one with every core table (wp_ first; a multisite's wp_2_ has no users)."""
    tables = set(tables)
    prefixes = sorted({t[: -len("options")] for t in tables if t.endswith("options")}, key=lambda p: (p != "wp_", p))
    return next((p for p in prefixes if all(p + t in tables for t in CORE_TABLES)), None)


def read_addresses(db: MariaDB, database: str, tables: Iterable[str]) -> dict[str, str]:
    """`siteurl` and `home` of the WordPress site in `database` (with these tables); {} when it has none."""
    prefix = table_prefix(tables)
    if prefix is None:
        return {}
    options = "`" + database.replace("`", "``") + "`.`" + (prefix + "options").replace("`", "``") + "`"
    rows = db.query(f"SELECT option_name, option_value FROM {options} WHERE option_name IN ('siteurl', 'home')")
    return {name: value.strip() for name, value in rows if name in ADDRESS_OPTIONS and value.strip()}


def host(address: str) -> str:
    """The host an address names, lower case, without a leading www."""
    try:
        name = urlsplit(address if "//" in address else f"//{address}").hostname or ""
    except ValueError:
        return address.lower()
    return name.removeprefix("www.")


def known_addresses(site: str, addresses: dict[str, str], before: list[str] | None) -> list[str]:
    """The addresses that belong to `site` after a dump with `addresses`: those, if they belong,
    else what was known before (the site's name when nothing was)."""
    if identity_problem(site, addresses, before) is None and addresses:
        return sorted(set(addresses.values()))
    return before or [site]


def identity_problem(site: str, addresses: dict[str, str], known: list[str] | None) -> str | None:
    """Why a database holding `addresses` is not `site`'s (whose known addresses are `known`), or None."""
    allowed = {host(site)} | {host(a) for a in known or []}
    foreign = {name: value for name, value in addresses.items() if host(value) not in allowed}
    if not foreign:
        return None
    held = ", ".join(f"{name} {value}" for name, value in sorted(addresses.items()))
    return f"holds {held}, not the address of site {site} ({', '.join(sorted(set(known or [site])))})"


def foreign_target(db: MariaDB, database: str, site: str, known: list[str] | None) -> str | None:
    """Why restoring `site` (its known addresses `known`) into `database` would overwrite another
    site: the WordPress there says it is somewhere else. None for a new, empty or non-WordPress
    database, or the site's own."""
    if not db.database_exists(database):
        return None
    problem = identity_problem(site, read_addresses(db, database, db.tables(database)), known)
    return f"database {database} {problem}" if problem else None


def identity_key(key: BackupKey) -> str:
    return key.manifest_key.removesuffix(".json") + ".identity"


def record_identity(store: Store, key: BackupKey, problem: str) -> None:
    store.put_bytes(identity_key(key), problem.encode())
