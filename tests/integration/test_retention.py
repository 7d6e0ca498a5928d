"""Retention on the real object stores: the plan is what happens, and the safety rules hold."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from resources.gpg import encrypt_argv
from resources.object_store import LocalStore, open_store
from wpfarm_assets.backups.backup import archive_files, back_up_database
from wpfarm_assets.backups.restore import list_backups, restore_database, restore_files
from wpfarm_assets.backups.retention import RetentionRefused, apply_retention, plan_retention
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import BackupKey
from wpfarm_assets.definitions import build_definitions
from wpfarm_assets.partitions import partition_range_tags

UTC = timezone.utc
START = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


class Seeder:
    """Copies of one real backup per kind under new times: real encrypted objects, real manifests."""

    def __init__(self, store, site, keyring, db):
        enc = encrypt_argv(keyring.fingerprint, keyring.public_home)
        self.store = store
        self.templates = {}
        for kind, make in (("db", lambda: back_up_database(site, db, store, enc, keyring.fingerprint, now=START - timedelta(days=400))),
                           ("files", lambda: archive_files(site, db.runner, store, enc, keyring.fingerprint, now=START - timedelta(days=400)))):
            backup = make()
            self.templates[kind] = (backup.manifest, store.get_bytes(backup.key.data_key))
            store.delete([backup.key.manifest_key, backup.key.data_key])

    def add(self, site: str, kind: str, time: datetime) -> BackupKey:
        manifest, data = self.templates[kind]
        key = BackupKey(site, kind, time)
        self.store.put_bytes(key.data_key, data)
        self.store.put_bytes(key.manifest_key, manifest.model_copy(update={
            "site": site, "object_key": key.data_key, "started_at": time.isoformat()}).to_bytes())
        return key

    def add_all(self, backups: list[tuple[str, str, datetime]]) -> list[BackupKey]:
        """add() of each (site, kind, time), several at once (the store's client is thread-safe)."""
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda backup: self.add(*backup), backups))


@pytest.fixture
def s3_farm(make_farm, s3, keyring, db):
    farm = make_farm(2, target=f"s3://{s3.new_bucket()}/farm", s3_endpoint_url=s3.endpoint)
    config = load_config()
    store = open_store(config.backup.target, config.backup.s3_endpoint_url)
    return farm, config, store, Seeder(store, config.sites[0], keyring, db)


def test_a_year_through_the_real_asset_leaves_exactly_what_the_plan_predicts(s3_farm, dagster_home, db, keyring, tmp_path):
    farm, config, store, seeder = s3_farm
    names = [s.name for s in config.sites]
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("sites", names)
    job = build_definitions(config).resolve_job_def("apply_retention")
    predicted = {name: set() for name in names}
    week: list[tuple[str, str, datetime]] = []
    for day in range(365):
        now = START + timedelta(days=day)
        for name in names:
            week += [(name, kind, now) for kind in ("db", "files")]
            predicted[name].add(now)
        if day % 14 == 13 or day == 364:  # retention runs fortnightly on this clock, and on the last day
            seeder.add_all(week)  # the nights since the last run, all in the store before it runs
            week.clear()
            result = job.execute_in_process(
                instance=instance, tags=partition_range_tags(names[0], names[-1]),
                run_config={"ops": {"retention": {"config": {"as_of": now.isoformat()}}}},
            )
            assert result.success
            for name in names:
                predicted[name] = set(plan_retention(predicted[name]))

    for name in names:
        expected = {BackupKey(name, kind, t) for t in predicted[name] for kind in ("db", "files")}
        expected_keys = {k.manifest_key for k in expected} | {k.data_key for k in expected}
        assert {o.key for o in store.list(f"sites/{name}/")} == expected_keys
    event = instance.get_latest_materialization_event(dg.AssetKey("retention"))
    metadata = event.asset_materialization.metadata
    assert metadata["kept_daily"].value == 28 and metadata["deleted"].value > 0  # 14 per kind

    site = config.sites[0]
    scratch = "wpt_retention_restore"
    try:
        for key in list_backups(store, site.name, "db")[::4]:  # every fourth point (all 52: benchmarks/retention_year)
            restore_database(site, store, db, keyring.home, to_database=scratch, on=key.time.date())
            assert db.checksums(scratch) == db.checksums(site.database)
        for key in list_backups(store, site.name, "files")[:: 5]:
            restored = restore_files(site, store, db.runner, keyring.home, to_path=str(tmp_path / key.stamp), on=key.time.date())
            assert tree_digest(restored["path"]) == tree_digest(farm.site_root(0))
    finally:
        db.drop_database(scratch)


def daily(store, seeder, site, days, start=START):
    return seeder.add_all([(site, kind, start + timedelta(days=d)) for d in range(days) for kind in ("db", "files")])


def test_dry_run_reports_the_same_and_deletes_nothing(s3_farm):
    _, config, store, seeder = s3_farm
    site = config.sites[0].name
    daily(store, seeder, site, 40)
    before = {o.key for o in store.list("sites/")}
    now = START + timedelta(days=40)
    dry = apply_retention(store, site, now, dry_run=True)
    assert {o.key for o in store.list("sites/")} == before
    real = apply_retention(store, site, now)
    assert (dry.deleted, dry.bytes_freed, dry.deleted_keys) == (real.deleted, real.bytes_freed, real.deleted_keys)
    assert real.deleted > 0 and {o.key for o in store.list("sites/")} == before - set(real.deleted_keys)


def test_the_newest_backup_is_never_deleted_even_when_asked_to_keep_nothing(s3_farm):
    _, config, store, seeder = s3_farm
    site = config.sites[0].name
    keys = daily(store, seeder, site, 5)
    apply_retention(store, site, START + timedelta(days=5), daily=0, weekly=0, monthly=0)
    assert list_backups(store, site, "db") == [keys[-2]] and list_backups(store, site, "files") == [keys[-1]]


@pytest.mark.parametrize("damage", ["truncated", "same size"])
def test_refuses_and_deletes_nothing_when_the_newest_backup_fails_verification(s3_farm, damage):
    _, config, store, seeder = s3_farm
    site = config.sites[0].name
    keys = daily(store, seeder, site, 30)
    newest_db = keys[-2]
    data = store.get_bytes(newest_db.data_key)
    store.put_bytes(newest_db.data_key, b"truncated" if damage == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    before = {o.key for o in store.list("sites/")}
    with pytest.raises(RetentionRefused, match=f"site {site}: newest db backup .* failed verification"):
        apply_retention(store, site, START + timedelta(days=30))
    assert {o.key for o in store.list("sites/")} == before


def test_aborted_uploads_older_than_a_day_are_removed(s3_farm, s3):
    _, config, store, seeder = s3_farm
    site = config.sites[0].name
    daily(store, seeder, site, 3)
    store.put_bytes(f"sites/{site}/db/20250101T000000Z.sql.zst.gpg", b"no manifest")
    bucket = config.backup.target[5:].split("/")[0]
    s3.client().create_multipart_upload(Bucket=bucket, Key=f"farm/sites/{site}/db/20250102T000000Z.sql.zst.gpg")
    young = apply_retention(store, site, datetime.now(UTC), dry_run=True)
    # The object was written just now: it could still be in progress, so it stays. (moto reports every
    # multipart upload as initiated in 2010, so the upload already counts as old here.)
    assert young.aborted_bytes == 0 and f"sites/{site}/db/20250101T000000Z.sql.zst.gpg" not in young.deleted_keys
    report = apply_retention(store, site, datetime.now(UTC) + timedelta(days=2))
    assert report.aborted_removed == 2
    assert f"sites/{site}/db/20250101T000000Z.sql.zst.gpg" not in {o.key for o in store.list("sites/")}
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert len(list_backups(store, site, "db")) == 3


class FailingSecondDelete(LocalStore):
    """A real local store whose second delete call, once armed, fails as an outage between the two would."""

    calls = None

    def delete(self, keys):
        if self.calls is not None:
            self.calls += 1
            if self.calls == 2:
                raise OSError("store went away")
        super().delete(keys)


def test_manifests_go_first_so_an_interrupted_cleanup_leaves_no_complete_looking_backup(make_farm, keyring, db):
    make_farm(1)
    config = load_config()
    site = config.sites[0]
    store = FailingSecondDelete(config.backup.target[len("file://"):])
    seeder = Seeder(store, site, keyring, db)
    daily(store, seeder, site.name, 30)
    store.calls = 0
    with pytest.raises(OSError, match="went away"):
        apply_retention(store, site.name, START + timedelta(days=30))
    remaining = list_backups(store, site.name, "db")
    assert set(k.time for k in remaining) == set(plan_retention(k.time for k in remaining))  # only kept ones look complete
    orphans = {o.key for o in store.list("sites/")} - {k.data_key for k in remaining} - {k.manifest_key for k in remaining}
    orphans -= {k.data_key for k in list_backups(store, site.name, "files")} | {k.manifest_key for k in list_backups(store, site.name, "files")}
    assert orphans  # data objects whose manifests are gone: aborted, cleaned by the next run
    store.calls = None
    apply_retention(store, site.name, datetime.now(UTC) + timedelta(days=2))  # a later run, a day on
    assert not [o for o in store.list("sites/") if o.key in orphans]


def test_backup_inventory_has_a_row_per_site_and_kind_with_ages_tiers_and_cost(s3_farm, dagster_home):
    from wpfarm_assets.backups.assets import backup_inventory
    from wpfarm_assets.definitions import build_resources

    _, config, store, seeder = s3_farm
    seen, never = config.sites[0].name, config.sites[1].name
    keys = daily(store, seeder, seen, 20, start=datetime.now(UTC).replace(microsecond=0) - timedelta(days=19, hours=3))
    tiers = list(plan_retention(k.time for k in keys if k.kind == "db").values())
    result = dg.materialize([backup_inventory], resources=build_resources(config), instance=dg.DagsterInstance.get())
    assert result.success
    frame = result.output_for_node("backup_inventory")
    assert len(frame) == 4 and set(frame["kind"]) == {"db", "files"}
    row = frame[(frame.site == seen) & (frame.kind == "db")].iloc[0]
    assert 2.9 <= row.age_hours <= 3.2 and row.restore_points == 20
    assert (row.daily, row.weekly, row.monthly) == tuple(tiers.count(t) for t in ("daily", "weekly", "monthly"))
    assert row.daily == 14
    assert row.stored_bytes == sum(o.size for o in store.list(f"sites/{seen}/db/"))
    assert frame[frame.site == never]["newest_backup"].isna().all()
    metadata = result.asset_materializations_for_node("backup_inventory")[0].metadata
    assert metadata["never_backed_up"].value == [never]
    assert metadata["projected_monthly_cost_usd"].value == 5.0  # under the 250 GiB Spaces includes


def test_one_farm_wide_listing_gives_each_site_exactly_its_own_objects(s3_farm, monkeypatch):
    import wpfarm_assets.backups.retention as retention_module

    _, config, store, seeder = s3_farm
    names = [s.name for s in config.sites]
    for name in names:
        daily(store, seeder, name, 3)
    per_site = retention_module.list_sites(store, names)
    monkeypatch.setattr(retention_module, "FARM_WIDE_LISTING_FROM", 1)
    farm_wide = retention_module.list_sites(store, names)
    for name in names:
        assert sorted(o.key for o in farm_wide[name].objects) == sorted(o.key for o in per_site[name].objects)
        assert len(per_site[name].objects) == 12 and all(o.key.startswith(f"sites/{name}/") for o in per_site[name].objects)
