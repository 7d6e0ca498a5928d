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
    """`siteurl` and `home` of the WordPress site in `database` (with these tables); {} when it has none.
    Read as hex (a value may hold tabs or line breaks), without control characters, at most 500
    characters (it reaches alerts and terminals)."""
    prefix = table_prefix(tables)
    if prefix is None:
        return {}
    options = "`" + database.replace("`", "``") + "`.`" + (prefix + "options").replace("`", "``") + "`"
    rows = db.query(f"SELECT option_name, HEX(LEFT(option_value, 500)) FROM {options} "
                    "WHERE option_name IN ('siteurl', 'home')")
    found = {}
    for name, value in (row for row in rows if len(row) == 2 and row[0] in ADDRESS_OPTIONS):
        text = "".join(c for c in bytes.fromhex(value).decode(errors="replace") if c.isprintable()).strip()
        if text:
            found[name] = text
    return found


def host(address: str) -> str:
    """The host an address names: lower case, IDNA-encoded (as site names are), without a leading www."""
    try:
        name = urlsplit(address if "//" in address else f"//{address}").hostname or ""
        name = name.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return address.lower()
    return name.removeprefix("www.")


def known_addresses(site: str, addresses: dict[str, str], before: list[str] | None) -> list[str]:
    """The addresses that belong to `site` after a dump with `addresses`: what was known before,
    and these if they belong (the site's name when nothing is known)."""
    known = set(before or [])
    if addresses and identity_problem(site, addresses, before) is None:
        known |= set(addresses.values())
    return sorted(known) or [site]


def identity_problem(site: str, addresses: dict[str, str], known: list[str] | None) -> str | None:
    """Why a database holding `addresses` is not `site`'s (whose known addresses, besides its name,
    are `known`), or None."""
    allowed = {host(site)} | {host(a) for a in known or []}
    if all(host(value) in allowed for value in addresses.values()):
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


def record_identity(store: Store, key: BackupKey, problem: str) -> None:
    store.put_bytes(key.identity_key, problem.encode())
