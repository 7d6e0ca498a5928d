"""The off-site copy on moto_server with S3 Object Lock: an attacker holding every key wpfarm holds
wipes the primary target and the copy's current objects, and cannot delete a locked version; the
site comes back from the copy as it was before the attack, and the primary is rebuilt from it. A
copy without object lock, or with wrong keys, fails by itself; the primary backups go on."""

import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import botocore.exceptions
import dagster as dg
import pytest

from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import instance, main, run_job
from wpfarm_assets.core.config import load_config


def offsite_farm(make_farm, s3, monkeypatch, lock: bool = True, n: int = 2):
    primary, copy = s3.new_bucket(), f"wpfarm-copy-{time.time_ns()}"
    s3.client().create_bucket(Bucket=copy, ObjectLockEnabledForBucket=lock)
    monkeypatch.setenv("OFFSITE_ACCESS_KEY_ID", "offsite-key")
    monkeypatch.setenv("OFFSITE_SECRET_ACCESS_KEY", "offsite-secret")
    farm = make_farm(n, target=f"s3://{primary}/farm", s3_endpoint_url=s3.endpoint,
                     offsite={"target": f"s3://{copy}/wpfarm", "s3_endpoint_url": s3.endpoint, "lock_days": 30})
    return farm, primary, copy


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_a_site_comes_back_from_the_locked_copy_after_both_targets_are_wiped(
        make_farm, s3, db, keyring, dagster_home, monkeypatch, capsys):
    farm, primary, copy = offsite_farm(make_farm, s3, monkeypatch)
    site = farm.sites[0]
    assert main(["backup"]) == 0
    copied = keys(s3, copy, "wpfarm/sites/")
    assert copied and keys(s3, primary, "farm/sites/") == [k.replace("wpfarm/", "farm/", 1) for k in copied
                                                           if not k.endswith("offsite-lock.json")]
    dump = next(k for k in copied if k.endswith(".sql.zst.gpg") and site["name"] in k)
    pack = next(k for k in copied if "/restic/data/" in k)
    for key in (dump, pack):  # every object wpfarm writes there is locked
        head = s3.client().head_object(Bucket=copy, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert (head["ObjectLockRetainUntilDate"] - datetime.now(timezone.utc)).days >= 29
    copied_run = instance().get_latest_materialization_event(dg.AssetKey("offsite_copy")).asset_materialization
    assert copied_run.metadata["backups_copied"].value == 2  # the site's dump and snapshot
    # The daily integrity check runs restic check of each site's repository on the copy, with the copy's keys.
    (integrity,) = run_job("verify_backups", load_config(), instance()).get_asset_check_evaluations()
    assert integrity.passed and integrity.metadata["ok"].value == 2 * 2 + 2, integrity  # db, files; the copies
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "object lock on" in out and out.count("copied up to") == 2, out

    before = db.checksums(site["database"]), tree_digest(farm.site_root(0))
    time.sleep(1.1)
    as_of = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.1)

    # The attack, with every key wpfarm holds: the primary bucket deleted; every version of the copy tried.
    client = s3.client()
    for key in keys(s3, primary):
        client.delete_object(Bucket=primary, Key=key)
    client.delete_bucket(Bucket=primary)
    versions = [v for page in client.get_paginator("list_object_versions").paginate(Bucket=copy)
                for v in page.get("Versions", [])]
    refused = 0
    for v in versions:
        try:
            client.delete_object(Bucket=copy, Key=v["Key"], VersionId=v["VersionId"])
        except botocore.exceptions.ClientError as exc:
            refused += exc.response["Error"]["Code"] == "AccessDenied"
    assert refused == len(versions) > 0
    for key in copied:  # overwrite the manifests and dumps, delete everything else
        if key.endswith((".json", ".gpg")):
            client.put_object(Bucket=copy, Key=key, Body=b"ransom note")
        else:
            client.delete_object(Bucket=copy, Key=key)
    capsys.readouterr()
    client.create_bucket(Bucket=primary)  # empty, as an operator finds it: status must not call the sites new
    assert main(["status"]) == 1
    assert "the primary target holds no backup of the site" in capsys.readouterr().out
    for key in keys(s3, primary):  # (status recorded the sites it took for new)
        client.delete_object(Bucket=primary, Key=key)
    client.delete_bucket(Bucket=primary)
    db.query(f"DROP TABLE `{site['database']}`.`wp_posts`")
    shutil.rmtree(Path(site["content_path"]) / "uploads")

    # With the primary gone, there is nowhere to put a checkpoint: one line says so, nothing is touched.
    capsys.readouterr()
    assert main(["restore", site["name"], "--from", "offsite", "--as-of", as_of, "--gnupg-home", keyring.home]) == 1
    assert "the checkpoint before the restore failed, nothing was restored" in capsys.readouterr().err
    assert main(["restore", site["name"], "--from", "offsite", "--as-of", as_of, "--no-checkpoint",
                 "--gnupg-home", keyring.home]) == 0
    assert f"(the off-site copy as of {as_of})" in capsys.readouterr().out
    assert db.checksums(site["database"]) == before[0]
    assert tree_digest(farm.site_root(0)) == before[1]

    client.create_bucket(Bucket=primary)  # a new, empty primary, then rebuilt from the copy
    assert main(["offsite", "recover", "--as-of", as_of, "--to", f"s3://{primary}/farm", "--site", "nosuch.example"]) == 2
    assert "held nothing of nosuch.example" in capsys.readouterr().err
    assert main(["offsite", "recover", "--as-of", as_of, "--to", f"s3://{primary}/farm"]) == 0
    assert keys(s3, primary, "farm/sites/") == [k.replace("wpfarm/", "farm/", 1) for k in copied
                                                 if not k.endswith("offsite-lock.json")]
    assert main(["backup"]) == 0  # the rebuilt primary takes the next night's backups, and the copy follows
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.count("copied up to") == 2 and "not on the copy" not in out, out


def test_a_copy_without_object_lock_is_refused_and_wrong_keys_fail_only_the_copy(
        make_farm, s3, db, dagster_home, monkeypatch, capsys):
    farm, primary, copy = offsite_farm(make_farm, s3, monkeypatch, lock=False, n=1)
    capsys.readouterr()
    assert main(["backup"]) == 1
    err = capsys.readouterr().err
    assert f"off-site copy refused: bucket {copy} has no S3 Object Lock" in err, err
    assert keys(s3, copy) == []
    capsys.readouterr()
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    (line,) = [row for row in out.splitlines() if row.startswith("farm") and "offsite" in row]
    assert "CRITICAL" in line and "not immutable" in line, out
    rows = [row.split() for row in out.splitlines() if row.startswith(farm.sites[0]["name"])]
    assert {row[1]: row[5] for row in rows if row[1] in ("db", "files")} == {"db": "OK", "files": "OK"}, out


@pytest.mark.parametrize("fault", ["dead endpoint", "missing key"])
def test_a_dead_copy_fails_per_site_and_the_next_run_catches_up(make_farm, s3, db, dagster_home, monkeypatch,
                                                                 capsys, fault):
    farm, primary, copy = offsite_farm(make_farm, s3, monkeypatch)
    config = farm.config_path.read_text()
    if fault == "dead endpoint":
        farm.config_path.write_text(config.replace(f"s3_endpoint_url: {s3.endpoint}\n    target: s3://{copy}",
                                                   f"s3_endpoint_url: http://127.0.0.1:9\n    target: s3://{copy}"))
        assert "127.0.0.1:9" in farm.config_path.read_text()
    else:
        monkeypatch.delenv("OFFSITE_ACCESS_KEY_ID")
    capsys.readouterr()
    assert main(["backup"]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"back_up_sites sites? [^:]+: success", out) and re.search(r"apply_retention sites? [^:]+: success", out)
    assert re.search(r"copy_offsite sites? [^:]+: FAILED", out), out
    reason = ("OFFSITE_ACCESS_KEY_ID is not set, but OFFSITE_SECRET_ACCESS_KEY is" if fault == "missing key"
              else "127.0.0.1:9")
    assert "offsite_copy: " in err and reason in err, err
    assert keys(s3, primary, "farm/sites/") and keys(s3, copy) == []
    capsys.readouterr()
    assert main(["status"]) == 1  # the backups are ok; the copy is not
    rows = [row.split() for row in capsys.readouterr().out.splitlines()]
    assert {row[1]: row[5] for row in rows if row and row[0] == farm.sites[0]["name"] and row[1] in ("db", "files")
            } == {"db": "OK", "files": "OK"}
    assert any(row[:3] == ["farm", "offsite", "-"] and "CRITICAL" in row for row in rows), rows

    farm.config_path.write_text(config)
    monkeypatch.setenv("OFFSITE_ACCESS_KEY_ID", "offsite-key")
    assert main(["offsite", "copy"]) == 0  # everything the failed runs missed
    assert [k for k in keys(s3, copy, "wpfarm/sites/") if not k.endswith("offsite-lock.json")] == [
        k.replace("farm/", "wpfarm/", 1) for k in keys(s3, primary, "farm/sites/")]


def test_one_key_of_a_pair_is_one_clear_line(make_farm, s3, monkeypatch, capsys):
    _, primary, _ = offsite_farm(make_farm, s3, monkeypatch, n=1)
    target = f"s3://{primary}/farm"
    monkeypatch.setenv("SPACES_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("SPACES_ACCESS_KEY_ID", raising=False)
    capsys.readouterr()
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("wpfarm: SPACES_ACCESS_KEY_ID is not set, but SPACES_SECRET_ACCESS_KEY is: set both (or neither, "
                   f"for {target})"), err
