"""`wpfarm files SITE ls|cat`: a files backup browsed and read without restoring anything; `cat`
writes the file's bytes and nothing else (for a pipe)."""

import time

from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.cli import main, store_of
from wpfarm_assets.core.config import load_config


def test_ls_and_cat_of_an_older_snapshot_give_that_days_bytes(make_farm, dagster_home, capsysbinary):
    farm = make_farm(1)
    name, root = farm.sites[0]["name"], farm.site_root(0)
    config_file = root / "wp-config.php"
    upload = next(p for p in (root / "wp-content").rglob("*") if p.is_file() and "uploads" in p.parts)
    first_config, first_upload = config_file.read_bytes(), upload.read_bytes()
    assert main(["backup"]) == 0
    time.sleep(1.1)  # the next backup has a stamp of its own
    config_file.write_bytes(first_config + b"\n// changed since\n")
    upload.write_bytes(b"\x00\xff" * 5000)
    assert main(["backup"]) == 0
    first, newest = list_backups(store_of(load_config()), name, "files")
    capsysbinary.readouterr()

    assert main(["files", name, "ls"]) == 0
    top = capsysbinary.readouterr().out.decode()
    assert "wp-content/" in top and "wp-config.php" in top
    folder = str(upload.parent.relative_to(root))
    assert main(["files", name, "ls", folder, "--at", first.stamp]) == 0
    listed = capsysbinary.readouterr().out.decode()
    assert f"{folder}/{upload.name}" in listed and f"{len(first_upload):,}" in listed

    assert main(["files", name, "cat", "wp-config.php", "--at", first.stamp]) == 0
    assert capsysbinary.readouterr().out == first_config  # the bytes, nothing else
    assert main(["files", name, "cat", str(upload.relative_to(root)), "--at", first.stamp]) == 0
    assert capsysbinary.readouterr().out == first_upload
    assert main(["files", name, "cat", "wp-config.php"]) == 0
    assert capsysbinary.readouterr().out == first_config + b"\n// changed since\n"  # the newest by default
    assert newest.stamp != first.stamp

    for argv, message in ((["cat", folder], "is a folder"), (["cat", "wp-content/no/such.file"], "is not in"),
                          (["cat", "../../etc/passwd"], "not a path inside"), (["cat"], "needs a PATH"),
                          (["ls", "--at", "yesterday"], "use a backup's stamp")):
        assert main(["files", name, *argv]) == 2, argv
        out = capsysbinary.readouterr()
        assert out.out == b"" and message in out.err.decode() and len(out.err.decode().splitlines()) == 1, (argv, out)
