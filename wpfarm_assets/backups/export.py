"""A site's backup as one portable archive for its owner (`wpfarm export`): a zip holding
`database.sql` (plain SQL, decrypted with the farm's private key now), `wp-content/` and
`wp-config.php` (its database password and keys/salts blanked unless asked for), and `README.txt`
saying how to import it anywhere. Streamed: the dump goes gpg -d | zstd -d straight into its zip
entry, the files come out of `restic dump` as a tar stream and go into zip entries one by one, so a
10 GB site is never in memory and on disk only once, as the archive (written under a temporary
name in the same folder, then linked to its name: never over a file, never half). Zip, not tar: it opens by
double-click on every system a site owner has.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tarfile
import tempfile
import threading
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from resources.gpg import decrypt_argv
from resources.object_store import Store
from resources.restic import Repository
from wpfarm_assets.backups.pipeline import restore_stream
from wpfarm_assets.backups.restore import choose_backup, nearest_backup
from wpfarm_assets.core.config import Site
from wpfarm_assets.core.errors import WpfarmError

SECRETS = ("DB_PASSWORD", "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT",
           "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")
_DEFINE = re.compile(rb"""(define\s*\(\s*(['"])(%s)\2\s*,\s*)(['"])((?:\\.|(?!\4).)*)\4"""
                     % b"|".join(s.encode() for s in SECRETS), re.DOTALL)
BLANKED = b"set-your-own"
ZIP_EPOCH = datetime(1980, 1, 1, tzinfo=timezone.utc)
CHUNK = 1 << 20

README = """This is the backup of {site} taken on {db_time} (database) and {files_time} (files), exported by
wpfarm on {now}.

  database.sql    the site's database as plain SQL (MariaDB/MySQL)
  wp-content/     themes, plugins and uploads
  wp-config.php   WordPress's configuration{secrets}

To bring the site up anywhere:
  1. Create an empty database and a user for it, then load the dump:
       mysql -u USER -p NEW_DATABASE < database.sql
  2. Install WordPress (the version the site ran), and put wp-content/ in its folder, replacing
     the one it came with.
  3. Edit wp-config.php: DB_NAME, DB_USER, DB_PASSWORD and DB_HOST for the new database{keys}; put it
     in WordPress's folder.
  4. If the site moves to another address, change it in WordPress (Settings > General) or with
     WP-CLI: wp search-replace 'https://{site}' 'https://NEW-ADDRESS' --all-tables
     (a plain text replace in database.sql breaks serialized options).
"""


class ExportError(WpfarmError):
    """The export failed; nothing is left at the target path."""


def redact_config(php: bytes) -> bytes:
    """wp-config.php with the database password and the keys and salts blanked."""
    return _DEFINE.sub(lambda m: m[1] + m[4] + BLANKED + m[4], php)


SANDBOX = b"/*M!999999"  # newer mariadb-dump's first line ("enable the sandbox mode"): MySQL's client refuses it


class _EntrySink:
    """The pipeline's sink process, writing into an open zip entry instead (without mariadb-dump's
    sandbox line, so that the SQL loads into MySQL too)."""

    def __init__(self, entry):
        self.entry, self.first = entry, True

    def write(self, data: bytes) -> None:
        if self.first:
            self.first = False
            if data.startswith(SANDBOX) and b"\n" in data:
                data = data.split(b"\n", 1)[1]
        self.entry.write(data)

    def close_stdin(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def wait(self) -> int:
        return 0

    def stderr_tail(self) -> str:
        return ""


def _member_name(name: str) -> str:
    """A tar member's name as a safe relative zip name: no absolute path, no `..`, no backslash
    (a folder separator on Windows), bytes that are not UTF-8 replaced."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\\", "_")
    clean = posixpath.normpath("/" + name).lstrip("/")
    if not clean or clean == "." or clean.startswith(".."):
        raise ExportError(f"the files backup holds a member named {name!r}: refused")
    return clean


def _files_into(zf: zipfile.ZipFile, repository: Repository, snapshot: str, include_secrets: bool) -> int:
    """The snapshot, as `restic dump` streams it (a tar), into zip entries; returns the file count."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def dump() -> None:
        def sink(chunk: bytes) -> None:
            try:
                os.write(write_fd, chunk)
            except OSError:
                pass  # the reader stopped (it failed): restic runs out, its output dropped
        try:
            repository.run(["--no-lock", "dump", snapshot, "/"], sink=sink)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(exc)
        finally:
            os.close(write_fd)

    worker = threading.Thread(target=dump, daemon=True, name="restic-dump")
    worker.start()
    count = 0
    try:
        with os.fdopen(read_fd, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue  # folders are implied; links and devices are not what a site owner needs
                name = _member_name(member.name)
                source = tar.extractfile(member)
                info = zipfile.ZipInfo(name, max(datetime.fromtimestamp(member.mtime, timezone.utc),
                                                 ZIP_EPOCH).timetuple()[:6])  # zip has no time before 1980
                info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, (member.mode & 0o777) << 16
                if name == "wp-config.php" and not include_secrets:
                    zf.writestr(info, redact_config(source.read()))
                else:
                    with zf.open(info, "w", force_zip64=True) as entry:
                        while chunk := source.read(CHUNK):
                            entry.write(chunk)
                count += 1
            for _ in stream:  # tar's end-of-archive blocks: let restic finish
                pass
    except tarfile.TarError as exc:
        worker.join()
        raise ExportError(f"the files backup did not read as a tar stream: {failure[0] if failure else exc}") from None
    worker.join()
    if failure:
        raise ExportError(f"restic dump of snapshot {snapshot[:8]} failed: {failure[0]}")
    return count


def export_site(site: Site, store: Store, repository: Repository, gnupg_home: str | None, to: str | os.PathLike,
                at: str | None = None, include_secrets: bool = False) -> dict:
    """Write the site's newest backups (or the database backup stamped `at`, and the newest files
    backup at or before it) as one zip at `to`; return what went in and the zip's sha256. The zip is
    written beside as `.partial` and renamed when whole; a failure leaves nothing at `to`."""
    db_key, db_manifest, _ = choose_backup(store, site.name, "db", gnupg_home, at=at)
    files_at = nearest_backup(store, site.name, "files", db_key.time).stamp if at else None  # the same night's
    files_key, files_manifest, _ = choose_backup(store, site.name, "files", gnupg_home, at=files_at, repository=repository)
    if not files_manifest.is_snapshot:
        raise ExportError(f"site {site.name}: files backup {files_key.stamp} is an older tar archive: restore it "
                          "with --to-path and zip that (export reads snapshots)")
    target = Path(to)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)  # never a link
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                                                          compresslevel=1) as zf:
            info = zipfile.ZipInfo("database.sql", db_key.time.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as entry:
                sql_bytes = restore_stream(store, db_key.data_key, db_manifest.sha256, decrypt_argv(gnupg_home),
                                           _EntrySink(entry))
            files = _files_into(zf, repository, files_manifest.snapshot_id, include_secrets)
            zf.writestr("README.txt", README.format(
                site=site.name, db_time=f"{db_key.time:%Y-%m-%d %H:%M:%S} UTC",
                files_time=f"{files_key.time:%Y-%m-%d %H:%M:%S} UTC",
                now=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
                secrets="" if include_secrets else " (database password, keys and salts blanked)",
                keys="" if include_secrets else ", and new keys and salts from https://api.wordpress.org/secret-key/1.1/salt/"))
        os.chmod(partial, 0o644)
        try:
            os.link(partial, target)  # whole, and never over a file that appeared meanwhile
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links (FAT on a USB stick): claim the name, then move
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            os.replace(partial, target)
    except FileExistsError:
        raise ExportError(f"{target} exists: refused (an export never replaces a file)") from None
    finally:
        partial.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return {"path": str(target), "sha256": digest.hexdigest(), "bytes": target.stat().st_size,
            "database": db_key.stamp, "sql_bytes": sql_bytes, "files": files_key.stamp, "file_count": files,
            "secrets": include_secrets}

