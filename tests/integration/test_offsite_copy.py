"""The copy's rules on moto_server with object lock: only what is new travels; a forged object is
not copied (nor its manifest), a rewritten one not again; a deletion by retention is followed as a
delete marker, a wiped primary is not followed; what the copy holds is locked again; the copy as of
a time ignores what was written or deleted later."""

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from resources.object_store import AsOfStore, StoreError, open_store
from wpfarm_assets.backups.offsite import OffsiteError, copy_prefix, recover
from wpfarm_assets.backups.offsite import copy_site as copy_with

SITE = "shop.example.com"
ROOT = f"sites/{SITE}/"
NOW = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)


def copy_site(primary, copy, site, now=NOW):
    return copy_with(primary, copy, site, now, (2, 0, 0))


@pytest.fixture
def stores(s3):
    primary, copy = s3.new_bucket(), f"wpfarm-lock-{time.time_ns()}"
    s3.client().create_bucket(Bucket=copy, ObjectLockEnabledForBucket=True)
    return (open_store(f"s3://{primary}/p", s3.endpoint), open_store(f"s3://{copy}/c", s3.endpoint, lock_days=1),
            s3.client(), copy)


def dump(store, stamp: str, body: bytes, sha: str | None = None) -> None:
    key = f"{ROOT}db/{stamp}.sql.zst.gpg"
    store.put_bytes(key, body)
    manifest = {"object_key": key, "sha256": sha or hashlib.sha256(body).hexdigest()}
    store.put_bytes(f"{ROOT}db/{stamp}.json", json.dumps(manifest).encode())


def test_only_new_objects_travel_and_each_is_locked(stores):
    primary, copy, client, bucket = stores
    dump(primary, "20261201T020000Z", b"monday")
    first = copy_site(primary, copy, SITE)
    assert first.copied == [f"{ROOT}db/20261201T020000Z.sql.zst.gpg", f"{ROOT}db/20261201T020000Z.json"]  # data first
    dump(primary, "20261202T020000Z", b"tuesday")
    second = copy_site(primary, copy, SITE)
    assert second.backups_copied == 1 and second.bytes_copied == len(b"tuesday") + len(
        primary.get_bytes(f"{ROOT}db/20261202T020000Z.json"))
    assert copy_site(primary, copy, SITE).copied == []
    head = client.head_object(Bucket=bucket, Key=f"c/{ROOT}db/20261202T020000Z.sql.zst.gpg")
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_a_forged_dump_is_not_copied_nor_its_manifest(stores):
    primary, copy, _, _ = stores
    dump(primary, "20261201T020000Z", b"the real dump", sha="0" * 64)  # the object is not what the manifest says
    with pytest.raises(OffsiteError, match="not copied"):
        copy_site(primary, copy, SITE)
    assert list(copy.list(ROOT)) == []


def test_a_restic_file_that_does_not_match_its_name_is_not_copied(stores):
    primary, copy, _, _ = stores
    primary.put_bytes(f"{ROOT}restic/data/ab/{'ab' * 32}", b"not what the name says")
    with pytest.raises(OffsiteError, match="not copied"):
        copy_site(primary, copy, SITE)


def test_retention_deletions_are_followed_a_wiped_primary_is_not(stores):
    primary, copy, client, bucket = stores
    for day in ("01", "02", "03"):
        dump(primary, f"202612{day}T020000Z", f"day {day}".encode())
    copy_site(primary, copy, SITE)
    primary.delete([f"{ROOT}db/20261201T020000Z.json", f"{ROOT}db/20261201T020000Z.sql.zst.gpg"])  # retention (2 daily)
    report = copy_site(primary, copy, SITE)
    assert report.deleted == [f"{ROOT}db/20261201T020000Z.json", f"{ROOT}db/20261201T020000Z.sql.zst.gpg"]
    assert len([o for o in copy.list(f"{ROOT}db/")]) == 4
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"c/{ROOT}db/20261201")
    assert len(versions["Versions"]) == 2 and len(versions["DeleteMarkers"]) == 2  # the locked data stays

    # Wiped, then a new backup on the empty primary: the copy's own retention keeps the 2 newest.
    primary.delete([o.key for o in primary.list(ROOT)])
    dump(primary, "20261204T020000Z", b"after the wipe")
    report = copy_site(primary, copy, SITE, NOW + timedelta(days=1))
    assert report.backups_copied == 1 and report.deleted == [f"{ROOT}db/20261202T020000Z.json",
                                                             f"{ROOT}db/20261202T020000Z.sql.zst.gpg"]
    assert sorted(report.kept) == [f"{ROOT}db/20261203T020000Z.json", f"{ROOT}db/20261203T020000Z.sql.zst.gpg"]
    # Its data deleted alone (the manifest kept): not followed.
    primary.delete([f"{ROOT}db/20261204T020000Z.sql.zst.gpg"])
    assert copy_site(primary, copy, SITE, NOW + timedelta(days=1)).deleted == []


def test_a_rewritten_backup_object_is_not_copied_again(stores):
    primary, copy, _, bucket = stores
    dump(primary, "20261201T020000Z", b"the dump")
    copy_site(primary, copy, SITE)
    primary.put_bytes(f"{ROOT}db/20261201T020000Z.sql.zst.gpg", b"RANSOMED, and longer")
    report = copy_site(primary, copy, SITE)
    assert report.changed == [f"{ROOT}db/20261201T020000Z.sql.zst.gpg"] and report.copied == []
    assert copy.get_bytes(f"{ROOT}db/20261201T020000Z.sql.zst.gpg") == b"the dump"


def test_what_the_copy_holds_is_locked_again_before_its_lock_ends(stores):
    primary, copy, client, bucket = stores
    dump(primary, "20261201T020000Z", b"the dump")
    first = copy_site(primary, copy, SITE, datetime.now(timezone.utc))
    assert first.relocked == 2  # nothing recorded yet: everything locked (again) now
    key = f"c/{ROOT}db/20261201T020000Z.sql.zst.gpg"
    until = client.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"]
    assert copy_site(primary, copy, SITE, datetime.now(timezone.utc)).relocked == 0  # within lock_days / 2
    later = datetime.now(timezone.utc) + timedelta(hours=13)  # lock_days is 1 here
    assert copy_site(primary, copy, SITE, later).relocked == 2
    assert client.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"] > until


def test_the_copy_as_of_a_time_and_recover(stores, s3):
    primary, copy, client, bucket = stores
    dump(primary, "20261201T020000Z", b"good")
    copy_prefix(primary, copy, ROOT, NOW, (2, 0, 0), 14)
    time.sleep(1.1)
    as_of = datetime.now(timezone.utc)
    time.sleep(1.1)
    client.put_object(Bucket=bucket, Key=f"c/{ROOT}db/20261201T020000Z.sql.zst.gpg", Body=b"ransom")  # overwritten
    client.delete_object(Bucket=bucket, Key=f"c/{ROOT}db/20261201T020000Z.json")  # deleted
    client.put_object(Bucket=bucket, Key=f"c/{ROOT}db/20261209T020000Z.json", Body=b"{}")  # planted later

    then = AsOfStore(copy, as_of)
    assert [o.key for o in then.list(ROOT) if "offsite-lock" not in o.key] == [
        f"{ROOT}db/20261201T020000Z.json", f"{ROOT}db/20261201T020000Z.sql.zst.gpg"]
    assert then.get_bytes(f"{ROOT}db/20261201T020000Z.sql.zst.gpg") == b"good"
    with pytest.raises(StoreError, match="read-only"):
        then.put_bytes("x", b"")
    assert [o.key for o in AsOfStore(copy, datetime(2020, 1, 1, tzinfo=timezone.utc)).list(ROOT)] == []

    target = open_store(f"s3://{s3.new_bucket()}/r", s3.endpoint)
    (site, binlogs) = recover(then, target)
    assert site.backups_copied == 1 and binlogs.copied == []
    assert target.get_bytes(f"{ROOT}db/20261201T020000Z.sql.zst.gpg") == b"good"
    assert recover(then, target)[0].copied == []  # run again: nothing twice
