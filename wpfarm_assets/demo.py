"""A demo farm: N WordPress sites with the real core table set, realistic rows, and wp-content trees.

Used by `wpfarm demo`, the tests and the benchmarks. Themes and plugins are shared between sites
(as on a real farm), uploads are incompressible media, and every site also carries what a backup
must leave out (cache/, upgrade/, a backup plugin's folder, logs). Sizes are configurable.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from resources.mariadb import MariaDB
from resources.ssh import CommandError, LocalRunner

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua farm cache varnish redis galera swarm backup restore theme plugin upload "
    "coffee garden travel recipe review summer winter music photo story news guide launch"
).split()

SCHEMA = """
CREATE TABLE wp_options (option_id bigint unsigned NOT NULL AUTO_INCREMENT, option_name varchar(191) NOT NULL DEFAULT '',
  option_value longtext NOT NULL, autoload varchar(20) NOT NULL DEFAULT 'yes', PRIMARY KEY (option_id),
  UNIQUE KEY option_name (option_name), KEY autoload (autoload)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_users (ID bigint unsigned NOT NULL AUTO_INCREMENT, user_login varchar(60) NOT NULL DEFAULT '',
  user_pass varchar(255) NOT NULL DEFAULT '', user_nicename varchar(50) NOT NULL DEFAULT '',
  user_email varchar(100) NOT NULL DEFAULT '', user_url varchar(100) NOT NULL DEFAULT '',
  user_registered datetime NOT NULL DEFAULT '0000-00-00 00:00:00', user_activation_key varchar(255) NOT NULL DEFAULT '',
  user_status int NOT NULL DEFAULT 0, display_name varchar(250) NOT NULL DEFAULT '', PRIMARY KEY (ID),
  KEY user_login_key (user_login), KEY user_email (user_email)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_usermeta (umeta_id bigint unsigned NOT NULL AUTO_INCREMENT, user_id bigint unsigned NOT NULL DEFAULT 0,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (umeta_id), KEY user_id (user_id)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_posts (ID bigint unsigned NOT NULL AUTO_INCREMENT, post_author bigint unsigned NOT NULL DEFAULT 0,
  post_date datetime NOT NULL DEFAULT '0000-00-00 00:00:00', post_date_gmt datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_content longtext NOT NULL, post_title text NOT NULL, post_excerpt text NOT NULL,
  post_status varchar(20) NOT NULL DEFAULT 'publish', comment_status varchar(20) NOT NULL DEFAULT 'open',
  ping_status varchar(20) NOT NULL DEFAULT 'open', post_password varchar(255) NOT NULL DEFAULT '',
  post_name varchar(200) NOT NULL DEFAULT '', to_ping text NOT NULL, pinged text NOT NULL,
  post_modified datetime NOT NULL DEFAULT '0000-00-00 00:00:00', post_modified_gmt datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_content_filtered longtext NOT NULL, post_parent bigint unsigned NOT NULL DEFAULT 0, guid varchar(255) NOT NULL DEFAULT '',
  menu_order int NOT NULL DEFAULT 0, post_type varchar(20) NOT NULL DEFAULT 'post', post_mime_type varchar(100) NOT NULL DEFAULT '',
  comment_count bigint NOT NULL DEFAULT 0, PRIMARY KEY (ID), KEY post_name (post_name(191)),
  KEY type_status_date (post_type,post_status,post_date,ID), KEY post_parent (post_parent), KEY post_author (post_author)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_postmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT, post_id bigint unsigned NOT NULL DEFAULT 0,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id), KEY post_id (post_id)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_comments (comment_ID bigint unsigned NOT NULL AUTO_INCREMENT, comment_post_ID bigint unsigned NOT NULL DEFAULT 0,
  comment_author tinytext NOT NULL, comment_author_email varchar(100) NOT NULL DEFAULT '', comment_author_url varchar(200) NOT NULL DEFAULT '',
  comment_author_IP varchar(100) NOT NULL DEFAULT '', comment_date datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  comment_date_gmt datetime NOT NULL DEFAULT '0000-00-00 00:00:00', comment_content text NOT NULL, comment_karma int NOT NULL DEFAULT 0,
  comment_approved varchar(20) NOT NULL DEFAULT '1', comment_agent varchar(255) NOT NULL DEFAULT '',
  comment_type varchar(20) NOT NULL DEFAULT 'comment', comment_parent bigint unsigned NOT NULL DEFAULT 0,
  user_id bigint unsigned NOT NULL DEFAULT 0, PRIMARY KEY (comment_ID), KEY comment_post_ID (comment_post_ID)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_commentmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT, comment_id bigint unsigned NOT NULL DEFAULT 0,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id), KEY comment_id (comment_id)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_terms (term_id bigint unsigned NOT NULL AUTO_INCREMENT, name varchar(200) NOT NULL DEFAULT '',
  slug varchar(200) NOT NULL DEFAULT '', term_group bigint NOT NULL DEFAULT 0, PRIMARY KEY (term_id), KEY slug (slug(191))) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_termmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT, term_id bigint unsigned NOT NULL DEFAULT 0,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id), KEY term_id (term_id)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_term_taxonomy (term_taxonomy_id bigint unsigned NOT NULL AUTO_INCREMENT, term_id bigint unsigned NOT NULL DEFAULT 0,
  taxonomy varchar(32) NOT NULL DEFAULT '', description longtext NOT NULL, parent bigint unsigned NOT NULL DEFAULT 0,
  count bigint NOT NULL DEFAULT 0, PRIMARY KEY (term_taxonomy_id), UNIQUE KEY term_id_taxonomy (term_id,taxonomy)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_term_relationships (object_id bigint unsigned NOT NULL DEFAULT 0, term_taxonomy_id bigint unsigned NOT NULL DEFAULT 0,
  term_order int NOT NULL DEFAULT 0, PRIMARY KEY (object_id,term_taxonomy_id)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE wp_links (link_id bigint unsigned NOT NULL AUTO_INCREMENT, link_url varchar(255) NOT NULL DEFAULT '',
  link_name varchar(255) NOT NULL DEFAULT '', link_image varchar(255) NOT NULL DEFAULT '', link_target varchar(25) NOT NULL DEFAULT '',
  link_description varchar(255) NOT NULL DEFAULT '', link_visible varchar(20) NOT NULL DEFAULT 'Y', link_owner bigint unsigned NOT NULL DEFAULT 1,
  link_rating int NOT NULL DEFAULT 0, link_updated datetime NOT NULL DEFAULT '0000-00-00 00:00:00', link_rel varchar(255) NOT NULL DEFAULT '',
  link_notes mediumtext NOT NULL, link_rss varchar(255) NOT NULL DEFAULT '', PRIMARY KEY (link_id)) DEFAULT CHARSET=utf8mb4;
"""

THEMES = ["twentytwentyfour", "astra", "generatepress"]
PLUGINS = ["akismet", "woocommerce", "contact-form-7", "wordpress-seo", "redis-cache"]


@dataclass(frozen=True)
class DemoSize:
    posts: int = 60
    post_words: int = 300
    uploads: int = 6
    upload_bytes: int = 64 << 10


def _sql(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rows(table: str, columns: list[str], rows, batch: int = 200):
    cols = ",".join(columns)
    buffer = []
    for row in rows:
        buffer.append("(" + ",".join(_sql(v) for v in row) + ")")
        if len(buffer) == batch:
            yield f"INSERT INTO {table} ({cols}) VALUES {','.join(buffer)};\n"
            buffer.clear()
    if buffer:
        yield f"INSERT INTO {table} ({cols}) VALUES {','.join(buffer)};\n"


def site_sql(name: str, size: DemoSize, rng: random.Random):
    """The SQL text of one site: schema and rows, as a stream of statements."""
    yield "SET foreign_key_checks=0; SET unique_checks=0; SET autocommit=0;\n"
    yield SCHEMA
    text = lambda n: " ".join(rng.choices(WORDS, k=n))  # noqa: E731
    day = lambda i: f"2026-{1 + i % 11:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"  # noqa: E731
    options = [("siteurl", f"https://{name}"), ("home", f"https://{name}"), ("blogname", text(3).title()),
               ("admin_email", f"admin@{name}"), ("template", THEMES[0]), ("stylesheet", THEMES[0]),
               ("active_plugins", 'a:2:{i:0;s:19:"akismet/akismet.php";i:1;s:27:"redis-cache/redis-cache.php";}')]
    yield from _rows("wp_options", ["option_name", "option_value", "autoload"], ((k, v, "yes") for k, v in options))
    yield from _rows("wp_users", ["user_login", "user_pass", "user_email", "user_registered", "display_name"],
                     ((f"user{u}", f"$P$B{rng.getrandbits(128):032x}", f"user{u}@{name}", day(u), text(2).title()) for u in range(1, 4)))
    yield from _rows("wp_usermeta", ["user_id", "meta_key", "meta_value"],
                     ((u, "wp_capabilities", 'a:1:{s:13:"administrator";b:1;}') for u in range(1, 4)))
    yield from _rows(
        "wp_posts",
        ["post_author", "post_date", "post_date_gmt", "post_content", "post_title", "post_excerpt", "post_name",
         "to_ping", "pinged", "post_modified", "post_modified_gmt", "post_content_filtered", "guid", "post_type"],
        ((1 + p % 3, day(p), day(p), "<!-- wp:paragraph --><p>" + text(size.post_words) + "</p><!-- /wp:paragraph -->",
          text(6).title(), text(20), f"post-{p}", "", "", day(p), day(p), "", f"https://{name}/?p={p}",
          "page" if p % 10 == 0 else "post") for p in range(1, size.posts + 1)),
        batch=50,
    )
    yield from _rows("wp_postmeta", ["post_id", "meta_key", "meta_value"],
                     ((p, k, text(4)) for p in range(1, size.posts + 1) for k in ("_edit_last", "_wp_page_template")))
    yield from _rows("wp_comments", ["comment_post_ID", "comment_author", "comment_author_email", "comment_date",
                                     "comment_date_gmt", "comment_content"],
                     ((1 + c % max(size.posts, 1), text(2).title(), f"c{c}@example.org", day(c), day(c), text(40))
                      for c in range(size.posts * 2)))
    yield from _rows("wp_terms", ["name", "slug"], ((w.title(), w) for w in WORDS[:12]))
    yield from _rows("wp_term_taxonomy", ["term_id", "taxonomy", "description"],
                     ((t, "category", text(8)) for t in range(1, 13)))
    yield from _rows("wp_term_relationships", ["object_id", "term_taxonomy_id"],
                     ((p, 1 + p % 12) for p in range(1, size.posts + 1)))
    yield "COMMIT;\n"


def create_site_database(db: MariaDB, database: str, name: str, size: DemoSize, seed: int) -> None:
    db.drop_database(database)
    db.create_database(database)
    loader = db.load(database)
    for statement in site_sql(name, size, random.Random(seed)):
        loader.write(statement.encode())
    status = loader.wait()
    if status != 0:
        raise RuntimeError(f"loading demo database {database} failed: {loader.stderr_tail()}")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def create_site_content(root: Path, name: str, size: DemoSize, seed: int) -> Path:
    """<root>/wp-config.php and <root>/wp-content/…; returns the wp-content path."""
    rng = random.Random(seed)
    content = root / "wp-content"
    _write(root / "wp-config.php", f"<?php\ndefine('DB_NAME', 'wp');\ndefine('WP_HOME', 'https://{name}');\n".encode())
    for theme in THEMES:  # the same bytes on every site
        trng = random.Random(theme)
        for f in range(4):
            body = " ".join(trng.choices(WORDS, k=400))
            _write(content / "themes" / theme / f"part-{f}.php", f"<?php /* {theme} */ echo '{body}';\n".encode())
        _write(content / "themes" / theme / "style.css", f"/* Theme Name: {theme} */\nbody {{ margin: 0 }}\n".encode())
    for plugin in PLUGINS:
        prng = random.Random(plugin)
        _write(content / "plugins" / plugin / f"{plugin}.php", " ".join(prng.choices(WORDS, k=800)).encode())
    for u in range(size.uploads):
        _write(content / "uploads" / "2026" / f"{1 + u % 12:02d}" / f"photo-{u}.jpg", rng.randbytes(size.upload_bytes))
    # What a backup leaves out.
    _write(content / "cache" / "page-cache.html", b"<html>cached</html>" * 100)
    _write(content / "upgrade" / "tmp.zip", b"PK" * 100)
    _write(content / "updraft" / "backup-db.gz", b"\x1f\x8b" * 100)
    _write(content / "debug.log", b"PHP Notice: demo\n" * 50)
    return content


def make_demo_farm(workdir: Path, db: MariaDB, *, sites: int, gpg_recipient: str, target: str,
                   size: DemoSize = DemoSize(), gpg_home: str | None = None, prefix: str = "demo") -> Path:
    """Create databases and content trees for `sites` sites; write and return a farm.yaml for them."""
    entries = []
    for i in range(1, sites + 1):
        name = f"site{i:03d}.{prefix}.wpfarm.test"
        database = f"wp_{prefix}_{i:03d}"
        create_site_database(db, database, name, size, seed=i)
        content = create_site_content(workdir / "sites" / name, name, size, seed=i)
        entries.append({"name": name, "database": database, "content_path": str(content)})
    config = {
        "database": {"host": db.host, "port": db.port, "user": db.user},
        "backup": {"target": target, "gpg_recipient": gpg_recipient, **({"gpg_home": gpg_home} if gpg_home else {})},
        # No Swarm here: `wpfarm site create` keeps site passwords in 0600 files instead of Swarm secrets.
        "provisioning": {"sites_root": str(workdir / "sites"), "secrets_dir": str(workdir / "secrets")},
        # Drills restore on this machine, with the demo keyring (it holds the secret key too).
        "drill": {"scratch_root": str(workdir / "drills"), **({"gnupg_home": gpg_home} if gpg_home else {})},
        "sites": entries,
    }
    path = workdir / "farm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_gpg_key(home: Path, name: str = "wpfarm demo backup key") -> str:
    """A throwaway keyring with one encryption key; returns its fingerprint."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    base = ["gpg", "--batch", "--homedir", str(home)]
    listed = subprocess.run(base + ["--with-colons", "--list-secret-keys", name], capture_output=True, text=True)
    if listed.returncode != 0:
        subprocess.run(base + ["--passphrase", "", "--quick-gen-key", name, "rsa3072", "encrypt", "never"],
                       check=True, capture_output=True)
        listed = subprocess.run(base + ["--with-colons", "--list-secret-keys", name], capture_output=True, text=True, check=True)
    return next(line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("fpr:"))


@contextlib.contextmanager
def binlog_server(folder: Path, timeout: float = 60):
    """A MariaDB server of the demo's own that writes binary logs (the machine's server may not), in
    `folder` (kept between runs), on a free loopback port; stopped when the block ends."""
    data = folder / "data"
    if not (data / "mysql").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["mariadbd", "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
            f"--socket={folder / 'mysqld.sock'}", f"--pid-file={folder / 'mysqld.pid'}", "--user=root",
            f"--log-bin={data / 'binlog'}", "--binlog-format=ROW", "--server-id=1", "--innodb-buffer-pool-size=64M"]
    with open(folder / "mariadbd.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    db = MariaDB(LocalRunner(), "127.0.0.1", port, "root", None)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                db.query("SELECT 1")
                break
            except CommandError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the demo's MariaDB did not start (see {folder / 'mariadbd.log'})") from None
                time.sleep(0.3)
        yield db
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
