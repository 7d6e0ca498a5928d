from datetime import datetime, timedelta, timezone

import pytest

from wpfarm_assets.core.keys import BackupKey, parse_manifest_key, site_prefix


def test_layout_is_per_site_and_kind_with_manifest_beside():
    key = BackupKey("blog.example.com", "db", datetime(2026, 11, 27, 2, 0, 5, tzinfo=timezone.utc))
    assert key.data_key == "sites/blog.example.com/db/20261127T020005Z.sql.zst.gpg"
    assert key.manifest_key == "sites/blog.example.com/db/20261127T020005Z.json"
    files = BackupKey("blog.example.com", "files", key.time)
    assert files.data_key == "sites/blog.example.com/files/20261127T020005Z.tar.zst.gpg"


def test_times_are_stored_in_utc():
    local = datetime(2026, 11, 27, 3, 0, tzinfo=timezone(timedelta(hours=1)))
    assert BackupKey("a.example", "db", local).stamp == "20261127T020000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        BackupKey("a.example", "db", datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose


def test_manifest_keys_parse_back_and_other_objects_do_not():
    key = BackupKey("a.example", "files", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert parse_manifest_key(key.manifest_key) == key
    assert parse_manifest_key(key.data_key) is None
    assert parse_manifest_key("sites/a.example/db/.20260102T030405Z.json.partial-1") is None
    assert parse_manifest_key("sites/a.example/other/20260102T030405Z.json") is None


@pytest.mark.parametrize("site", ["../etc", "a/b", "$(id)"])
def test_hostile_names_never_become_keys(site):
    with pytest.raises(ValueError):
        site_prefix(site, "db")
