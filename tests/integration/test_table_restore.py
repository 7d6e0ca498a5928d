"""One table back from a backup, the rest of the live site as it is: `wpfarm restore SITE --table`."""

from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.cli import main, store_of
from wpfarm_assets.core.config import load_config


def test_the_comments_come_back_and_the_new_posts_stay(make_farm, dagster_home, db, keyring, capsys):
    farm = make_farm(1)
    name, database = farm.sites[0]["name"], farm.sites[0]["database"]
    assert main(["backup"]) == 0
    comments = db.checksums(database)["wp_comments"]
    db.query(f"DELETE FROM {database}.wp_comments")  # the customer emptied them
    db.query(f"INSERT INTO {database}.wp_posts (post_title, post_content, post_excerpt, to_ping, pinged, "
             "post_content_filtered) VALUES ('written since', 'x', '', '', '', '')")
    before = db.checksums(database)

    stamp = list_backups(store_of(load_config()), name, "db")[-1].stamp
    assert main(["restore", name, "--table", "wp_nothing", "--at", stamp, "--gnupg-home", keyring.home]) == 1
    refused = capsys.readouterr().err
    assert "has no table wp_nothing; it has: " in refused and "wp_comments" in refused
    assert db.checksums(database) == before  # nothing was written

    assert main(["restore", name, "--table", "wp_comments", "--gnupg-home", keyring.home]) == 0
    assert "table(s) wp_comments restored" in capsys.readouterr().out
    after = db.checksums(database)
    assert after["wp_comments"] == comments  # back
    assert {t: v for t, v in after.items() if t != "wp_comments"} == {
        t: v for t, v in before.items() if t != "wp_comments"}  # every other table as it was: the new post stays
    assert not db.query("SHOW DATABASES LIKE 'wpfarm\\\\_restore\\\\_%'")  # no scratch left
    assert main(["status"]) == 0 and main(["backup"]) == 0  # a table restore that completed leaves no mark
