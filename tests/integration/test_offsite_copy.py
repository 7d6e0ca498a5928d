"""The copy's rules on moto_server with object lock: only what is new travels; a forged object is
not copied (nor its manifest); a deletion by retention is followed as a delete marker, a wiped
primary is not followed; the copy as of a time ignores what was written or deleted later."""

import hashlib
import json
import time
from datetime import datetime, timezone

import pytest

from resources.object_store import AsOfStore, StoreError, open_store
from wpfarm_assets.backups.offsite import OffsiteError, copy_prefix, copy_site, recover

SITE = "shop.example.com"
ROOT = f"sites/{SITE}/"


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
    primary.delete([f"{ROOT}db/20261201T020000Z.json", f"{ROOT}db/20261201T020000Z.sql.zst.gpg"])  # retention
    report = copy_site(primary, copy, SITE)
    assert sorted(report.deleted) == [f"{ROOT}db/20261201T020000Z.json", f"{ROOT}db/20261201T020000Z.sql.zst.gpg"]
    assert len(list(copy.list(ROOT))) == 4
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"c/{ROOT}db/20261201")
    assert len(versions["Versions"]) == 2 and len(versions["DeleteMarkers"]) == 2  # the locked data stays

    primary.delete([o.key for o in primary.list(ROOT)])  # wiped: the copy keeps everything
    report = copy_site(primary, copy, SITE)
    assert report.deleted == [] and "newest backup" in report.not_deleted
    assert len(list(copy.list(ROOT))) == 4


def test_the_copy_as_of_a_time_and_recover(stores, s3):
    primary, copy, client, bucket = stores
    dump(primary, "20261201T020000Z", b"good")
    copy_prefix(primary, copy, ROOT)
    time.sleep(1.1)
    as_of = datetime.now(timezone.utc)
    time.sleep(1.1)
    client.put_object(Bucket=bucket, Key=f"c/{ROOT}db/20261201T020000Z.sql.zst.gpg", Body=b"ransom")  # overwritten
    client.delete_object(Bucket=bucket, Key=f"c/{ROOT}db/20261201T020000Z.json")  # deleted
    client.put_object(Bucket=bucket, Key=f"c/{ROOT}db/20261209T020000Z.json", Body=b"{}")  # planted later

    then = AsOfStore(copy, as_of)
    assert [o.key for o in then.list(ROOT)] == [f"{ROOT}db/20261201T020000Z.json",
                                                f"{ROOT}db/20261201T020000Z.sql.zst.gpg"]
    assert then.get_bytes(f"{ROOT}db/20261201T020000Z.sql.zst.gpg") == b"good"
    with pytest.raises(StoreError, match="read-only"):
        then.put_bytes("x", b"")
    assert [o.key for o in AsOfStore(copy, datetime(2020, 1, 1, tzinfo=timezone.utc)).list(ROOT)] == []

    target = open_store(f"s3://{s3.new_bucket()}/r", s3.endpoint)
    (site, binlogs) = recover(then, target)
    assert site.backups_copied == 1 and binlogs.copied == []
    assert target.get_bytes(f"{ROOT}db/20261201T020000Z.sql.zst.gpg") == b"good"
    assert recover(then, target)[0].copied == []  # run again: nothing twice
