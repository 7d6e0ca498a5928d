"""A real WordPress site (Debian's `wordpress` on php-cli) with widgets and theme options whose
PHP-serialized values hold its URL: `wpfarm clone` → WordPress, pointed at the clone's database
(/etc/wordpress/config-<clone>.php, no WP_HOME or WP_SITEURL), reads the new address, every value
PHP could unserialize before it can after, posts, comments and files equal, production unchanged."""

import json
import subprocess
import uuid
from pathlib import Path

import yaml

from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main

CONFIG = "<?php\ndefine('DB_NAME', '{db}');\ndefine('DB_USER', 'root');\ndefine('DB_PASSWORD', '');\n" \
         "define('DB_HOST', '127.0.0.1:{port}');\n$table_prefix = 'wp_';\n"
LOAD = "$_SERVER['HTTP_HOST'] = $argv[1]; $_SERVER['REQUEST_URI'] = '/'; define('WP_USE_THEMES', false);\n"
INSTALL = LOAD + """define('WP_INSTALLING', true);
require '/usr/share/wordpress/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
wp_install('Shop ☕', 'admin', 'admin@example.org', true, '', 'not-a-real-password');
$url = 'https://' . $argv[1];
update_option('siteurl', $url); update_option('home', $url);
update_option('widget_text', [2 => ['title' => 'Café', 'text' => "<a href=\\"$url/about\\">About</a>"],
                              '_multiwidget' => 1]);
update_option('theme_mods_twentytwentythree', ['header_image' => "$url/wp-content/uploads/h.jpg",
    'custom' => (object) ['logo' => "$url/logo.png", 'nested' => serialize(['feed' => "$url/feed"])]]);
for ($i = 0; $i < 5; $i++) {
    $id = wp_insert_post(['post_title' => "Post $i", 'post_status' => 'publish',
        'post_content' => "<a href=\\"$url/?p=$i\\">link</a> héllo"]);
    update_post_meta($id, '_links', ['self' => "$url/?p=$id", 'json' => json_encode(['u' => "$url/x"])]);
    wp_insert_comment(['comment_post_ID' => $id, 'comment_content' => "nice, see $url", 'comment_approved' => 1]);
}
"""
READ = LOAD + """require '/usr/share/wordpress/wp-load.php';
global $wpdb;
$serialized = 0; $broken = 0;
foreach (array_merge($wpdb->get_col("SELECT option_value FROM $wpdb->options"),
                     $wpdb->get_col("SELECT meta_value FROM $wpdb->postmeta")) as $v) {
    if (is_serialized($v)) { $serialized++; if (@unserialize($v) === false && $v !== 'b:0;') $broken++; }
}
$mods = get_option('theme_mods_twentytwentythree');
echo json_encode(['siteurl' => get_option('siteurl'), 'home' => get_option('home'), 'serialized' => $serialized,
    'broken' => $broken, 'posts' => (int) wp_count_posts()->publish, 'comments' => (int) get_comments(['count' => true]),
    'widget' => get_option('widget_text')[2]['text'], 'logo' => $mods['custom']->logo,
    'feed' => unserialize($mods['custom']->nested)['feed'], 'blog_public' => get_option('blog_public')]);
"""


def wordpress(script: str, host: str) -> str:
    return subprocess.run(["php", "-r", script, "--", host], capture_output=True, text=True, check=True,
                          timeout=120).stdout


def test_wordpress_reads_its_clone_at_the_new_address(make_farm, db, keyring, dagster_home, tmp_path, capsys):
    farm = make_farm(1, sections={"provisioning": {"sites_root": str(tmp_path / "srv")}})
    host = f"wp-{uuid.uuid4().hex[:6]}.example.com"
    database = f"wpt_{host.split('.')[0].replace('-', '_')}"
    configs = [Path(f"/etc/wordpress/config-{host}.php"), Path(f"/etc/wordpress/config-staging.{host}.php")]
    db.create_database(database)
    try:
        configs[0].write_text(CONFIG.format(db=database, port=db.port))
        wordpress(INSTALL, host)
        content = tmp_path / "sites" / host / "wp-content"
        (content / "uploads").mkdir(parents=True)
        (content / "uploads" / "h.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        raw = yaml.safe_load(farm.config_path.read_text())
        raw["sites"].append({"name": host, "database": database, "content_path": str(content)})
        farm.config_path.write_text(yaml.safe_dump(raw))
        before = json.loads(wordpress(READ, host))
        assert before["siteurl"] == f"https://{host}" and before["serialized"] >= 8 and before["broken"] == 0, before
        checksums = db.checksums(database)
        assert main(["backup", host]) == 0

        clone = f"staging.{host}"
        capsys.readouterr()
        assert main(["clone", host, clone, "--gnupg-home", keyring.home]) == 0
        out = capsys.readouterr().out
        clone_db = next(line for line in out.splitlines() if "database " in line).split("database ")[1].split(" ")[0]
        configs[1].write_text(CONFIG.format(db=clone_db, port=db.port))
        after = json.loads(wordpress(READ, clone))
        assert after["siteurl"] == after["home"] == f"https://{clone}", after
        assert after["serialized"] == before["serialized"] and after["broken"] == 0
        assert (after["posts"], after["comments"]) == (before["posts"], before["comments"]) == (6, 6)  # + Hello world!
        assert after["widget"] == f'<a href="https://{clone}/about">About</a>'
        assert after["logo"] == f"https://{clone}/logo.png" and after["feed"] == f"https://{clone}/feed"
        assert after["blog_public"] == "0"
        assert tree_digest(tmp_path / "srv" / clone)[1] == tree_digest(content.parent)[1]  # files equal
        assert db.checksums(database) == checksums  # production only read
        assert main(["clone", "--delete", clone]) == 0
    finally:
        for config in configs:
            config.unlink(missing_ok=True)
        db.drop_database(database)
