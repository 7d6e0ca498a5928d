"""A dump restores under any database name: views, triggers, routines and events whose definer no
longer exists work in another database (their DEFINER dropped, the source database's name in them
replaced), and the drill proves it (every view selected, every routine without parameters run)."""

import json
import uuid

from wpfarm_assets.cli import main, store_of
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import site_root


def test_views_triggers_and_routines_of_a_vanished_definer_work_in_another_database(make_farm, db, keyring,
                                                                                     dagster_home, capsys):
    farm = make_farm(1)
    site = farm.sites[0]
    source = site["database"]
    user = f"wpt_definer_{uuid.uuid4().hex[:6]}"
    definer = f"`{user}`@`localhost`"
    # Rows that look like what the filter rewrites outside the rows: they must come back byte for byte.
    db.query(f"CREATE TABLE `{source}`.wp_audit (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)")
    tricky = [f"DEFINER=`x`@`y` and `{source}`.wp_posts", f"{source}.wp_posts;", "multi\nline `a`.`b`"]
    db.query(f"INSERT INTO `{source}`.wp_audit (note) VALUES " + ", ".join(f"(X'{t.encode().hex()}')" for t in tricky))
    db.query(f"CREATE USER '{user}'@'localhost'")
    db.query(f"GRANT ALL ON `{source}`.* TO '{user}'@'localhost'")
    for statement in (
        f"CREATE DEFINER={definer} SQL SECURITY DEFINER VIEW `{source}`.recent AS SELECT ID, post_title FROM "
        f"`{source}`.wp_posts WHERE post_type = 'post'",
        f"CREATE DEFINER={definer} TRIGGER `{source}`.stamp BEFORE UPDATE ON `{source}`.wp_posts FOR EACH ROW "
        f"INSERT INTO {source}.wp_audit (note) VALUES ('updated')",  # unqualified-quoted name in the body
        f"CREATE DEFINER={definer} PROCEDURE `{source}`.count_posts() SELECT COUNT(*) FROM `{source}`.wp_posts",
        f"CREATE DEFINER={definer} FUNCTION `{source}`.posts() RETURNS INT READS SQL DATA "
        f"RETURN (SELECT COUNT(*) FROM `{source}`.wp_posts)",
        f"CREATE DEFINER={definer} EVENT `{source}`.tidy ON SCHEDULE EVERY 1 DAY DISABLE DO "
        f"DELETE FROM `{source}`.wp_comments WHERE 1 = 0",
    ):
        db.query(statement)
    owner = f"wpt_owner_{uuid.uuid4().hex[:6]}"  # the site's own account: it exists, with rights on its database only
    db.query(f"CREATE USER '{owner}'@'localhost'")
    db.query(f"GRANT ALL ON `{source}`.* TO '{owner}'@'localhost'")
    db.query(f"CREATE DEFINER=`{owner}`@`localhost` SQL SECURITY DEFINER VIEW `{source}`.mine AS SELECT ID FROM "
             f"`{source}`.wp_posts")
    db.query(f"DROP USER '{user}'@'localhost'")  # the definer is gone, as after a server move
    assert main(["backup"]) == 0

    other = f"{source}_elsewhere"
    try:
        assert main(["restore", site["name"], "--kind", "db", "--to-database", other, "--gnupg-home", keyring.home]) == 0
        assert db.query(f"SELECT COUNT(*) FROM `{other}`.mine") == db.query(f"SELECT COUNT(*) FROM `{source}`.mine")
        assert db.query(f"SELECT COUNT(*) FROM `{other}`.recent")[0][0] == db.query(  # (the source's fails: 1449)
            f"SELECT COUNT(*) FROM `{source}`.wp_posts WHERE post_type = 'post'")[0][0]
        view = db.query(f"SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{other}'")[0][0]
        assert source + "`" not in view and f"`{source}`" not in view  # it reads its own database, not the source
        assert [bytes.fromhex(r[0]).decode() for r in db.query(
            f"SELECT HEX(note) FROM `{other}`.wp_audit ORDER BY id")] == tricky  # rows untouched
        audits = db.query(f"SELECT COUNT(*) FROM `{source}`.wp_audit")
        db.query(f"UPDATE `{other}`.wp_posts SET post_title = 'edited' WHERE ID = 1")  # the trigger runs (no 1449)
        assert db.query(f"SELECT COUNT(*) FROM `{other}`.wp_audit")[0][0] == "4"  # into the copy's own table
        assert db.query(f"SELECT COUNT(*) FROM `{source}`.wp_audit") == audits  # production untouched
        assert db.query(f"SELECT `{other}`.posts()")[0][0] == db.query(f"SELECT COUNT(*) FROM `{other}`.wp_posts")[0][0]
        db.query(f"CALL `{other}`.count_posts()")
        assert db.query(f"SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{other}'")[0][0] == "1"
    finally:
        db.drop_database(other)

    capsys.readouterr()
    clone = f"copy.{site['name']}"
    assert main(["clone", site["name"], clone, "--content-path", f"{farm.workdir}/clones/{clone}/wp-content",
                 "--gnupg-home", keyring.home]) == 0
    database = next(line for line in capsys.readouterr().out.splitlines() if "database " in line).split(
        "database ")[1].split(" ")[0]
    posts = db.query(f"SELECT COUNT(*) FROM `{database}`.wp_posts")[0][0]
    assert db.query(f"SELECT `{database}`.posts()")[0][0] == posts  # the clone's routines and views work
    assert int(db.query(f"SELECT COUNT(*) FROM `{database}`.recent")[0][0]) > 0
    db.query(f"UPDATE `{database}`.wp_posts SET post_title = 'edited' WHERE ID = 1")  # its trigger: no 1449
    assert main(["clone", "--delete", clone]) == 0

    assert main(["drill", site["name"]]) == 0, capsys.readouterr()
    store = store_of(load_config())
    record = json.loads(store.get_bytes(max(o.key for o in store.list(f"{site_root(site['name'])}drills/"))))
    # The view selected, the function that reads only called; the procedure not called (it may write).
    assert record["passed"] and record["views"] == 2 and record["routines_called"] == 1 and record["procedures"] == 1
    db.query(f"DROP USER '{owner}'@'localhost'")
