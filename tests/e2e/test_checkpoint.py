"""A restore over the live site first takes a checkpoint of what it overwrites: printed with the
command that undoes the restore, never taken by a plain restore, kept 7 days outside the tiers."""

import re
from datetime import timedelta
from pathlib import Path

from wpfarm_assets.backups.health import group_listing
from wpfarm_assets.backups.retention import apply_retention
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main, object_store_of
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import site_root


def test_a_restore_in_place_can_be_undone_from_its_checkpoint(make_farm, db, keyring, dagster_home, capsys):
    farm = make_farm(1)
    site = farm.sites[0]
    assert main(["backup"]) == 0
    nightly = db.checksums(site["database"]), tree_digest(farm.site_root(0))
    # The day's work the restore will overwrite: a new comment, an upload edited (a restore leaves
    # files the backup does not have where they are: it overwrites, it does not delete).
    db.query(f"INSERT INTO `{site['database']}`.wp_comments (comment_post_ID, comment_author, comment_author_email, comment_date, comment_date_gmt, comment_content) VALUES (1, 'R', 'r@example.org', NOW(), NOW(), 'today')")
    edited = next(p for p in sorted((Path(site["content_path"]) / "uploads").rglob("*")) if p.is_file())
    edited.write_bytes(b"edited today")
    today = db.checksums(site["database"]), tree_digest(farm.site_root(0))

    store = object_store_of(load_config()).store()
    listed = sorted(o.key for o in store.list(site_root(site["name"])))
    assert main(["restore", site["name"], "--kind", "db", "--table", "wp_nothing", "--gnupg-home", keyring.home]) == 1
    assert sorted(o.key for o in store.list(site_root(site["name"]))) == listed  # refused: no checkpoint either

    capsys.readouterr()
    assert main(["restore", site["name"], "--gnupg-home", keyring.home]) == 0
    out = capsys.readouterr().out
    undo = dict(re.findall(rf"to undo: wpfarm restore {re.escape(site['name'])} --kind (\w+) --at (\w+)", out))
    assert set(undo) == {"db", "files"} and f"--at {undo['db']} --gnupg-home {keyring.home}" in out, out
    assert (db.checksums(site["database"]), tree_digest(farm.site_root(0))) == nightly

    resource = object_store_of(load_config())
    entry = group_listing(list(store.list(site_root(site["name"]))))[site["name"]]
    assert [k.stamp for k in entry.checkpoints["db"]] == [undo["db"]]  # not among the site's restore points
    assert undo["db"] not in [k.stamp for k in entry.backups["db"]]
    capsys.readouterr()
    main(["backups", site["name"]])
    listed = capsys.readouterr().out  # listed, marked, so the stamp can be found again
    assert re.search(rf"db     {undo['db']} .* checkpoint before a restore \(kept 7 days; --at {undo['db']}\)", listed), listed

    assert main(["restore", site["name"], "--kind", "db", "--at", undo["db"], "--gnupg-home", keyring.home]) == 0
    assert main(["restore", site["name"], "--kind", "files", "--at", undo["files"], "--gnupg-home", keyring.home]) == 0
    assert (db.checksums(site["database"]), tree_digest(farm.site_root(0))) == today  # undone

    # A plain restore takes the nightly backup again, never a checkpoint.
    assert main(["restore", site["name"], "--kind", "db", "--no-checkpoint", "--gnupg-home", keyring.home]) == 0
    assert "no db checkpoint taken (--no-checkpoint)" in capsys.readouterr().out
    assert db.checksums(site["database"]) == nightly[0]

    # Retention keeps the checkpoints (two of each kind now) for 7 days, outside the tiers, then deletes
    # them; except the newest, the site's newest backup, which is never deleted before a newer one comes.
    checkpoints = group_listing(list(store.list(site_root(site["name"]))))[site["name"]].checkpoints
    assert len(checkpoints["db"]) == 2 and len(checkpoints["files"]) == 2
    newest = max(k.time for kind in checkpoints.values() for k in kind)
    for days, left in ((6, 2), (8, 1)):
        report = apply_retention(store, site["name"], newest + timedelta(days=days),
                                 repository=resource.repository(site["name"]))
        assert report.kinds["db"].kept["checkpoint"] == left and report.kinds["db"].kept["daily"] == 1, report
        assert report.kinds["files"].kept["checkpoint"] == left
    entry = group_listing(list(store.list(site_root(site["name"]))))[site["name"]]
    assert [len(entry.checkpoints[kind]) for kind in ("db", "files")] == [1, 1] and len(entry.backups["db"]) == 1
    assert len([k for k in entry.objects if k.endswith(".checkpoint")]) == 2
