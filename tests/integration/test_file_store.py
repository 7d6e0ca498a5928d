"""The file store (one restic repository per site): a night reads what changed, `--path` restores
one folder and nothing else, older tar archives stay restorable and are retained beside snapshots,
the inventory bills the repositories, and the integrity check runs restic check."""

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from resources.gpg import encrypt_argv
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import archive_files, back_up_files
from wpfarm_assets.backups.health import CRITICAL, OK, backup_integrity, group_listing
from wpfarm_assets.backups.inventory import backup_inventory
from wpfarm_assets.backups.restore import list_backups, read_manifest
from wpfarm_assets.backups.retention import apply_retention, plan_retention
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.cli import main
from wpfarm_assets.core.config import load_config
from wpfarm_assets.core.keys import SITES, repository_prefix
from wpfarm_assets.definitions import build_resources


def rchar() -> int:
    """Bytes read by this process and its reaped children (restic among them)."""
    return int(next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar")).split()[1])


def farm_parts(farm):
    config = load_config()
    resource = build_resources(config)["object_store"].process_config_and_initialize()
    return config, resource.store(), resource


def test_a_night_reads_only_what_changed(make_farm, tmp_path):
    farm = make_farm(1)
    config, store, resource = farm_parts(farm)
    site = config.sites[0]
    uploads = Path(site.content_path) / "uploads" / "2026"
    for i in range(20):
        (uploads / f"big-{i}.jpg").write_bytes(os.urandom(1 << 20))
    content = sum(f.stat().st_size for f in Path(site.content_path).rglob("*") if f.is_file())

    def night() -> int:
        before = rchar()
        back_up_files(site, LocalRunner(), store, resource.repository(site.name))
        return rchar() - before

    first = night()
    unchanged = night()
    (uploads / "new.jpg").write_bytes(os.urandom(1 << 20))
    one_new = night()
    print(f"wp-content {content / 1e6:.1f} MB; read: first night {first / 1e6:.1f} MB, no change "
          f"{unchanged / 1e6:.2f} MB ({unchanged / content:.1%}), one new 1 MB upload {one_new / 1e6:.2f} MB")
    # rchar also counts restic reading back its own temporary pack files before it stores them: an
    # upper bound of what it read from the site (about 3x what it stored, on this machine).
    assert first > content  # the measure sees file reads
    assert unchanged < 0.05 * content
    assert (1 << 20) < one_new < 0.25 * content
    manifest = read_manifest(store, list_backups(store, site.name, "files")[-1])
    assert (manifest.files_new, manifest.files_changed) == (1, 0) and manifest.files_unmodified > 20


def test_restore_of_one_folder_writes_only_that_folder(make_farm, dagster_home):
    farm = make_farm(1)
    site = farm.sites[0]
    root = farm.site_root(0)
    assert main(["backup"]) == 0
    folder = root / "wp-content" / "uploads" / "2026"
    lost = next(folder.rglob("*.jpg"))
    original = lost.read_bytes()
    lost.unlink()
    (folder / "added-after.jpg").write_bytes(b"new since the backup")
    theme = next((root / "wp-content" / "themes").rglob("*.php"))
    theme.write_text("<?php // changed since the backup")
    assert main(["restore", site["name"], "--path", "wp-content/uploads/2026"]) == 0
    assert lost.read_bytes() == original
    assert (folder / "added-after.jpg").read_bytes() == b"new since the backup"  # merged, not replaced
    assert theme.read_text() == "<?php // changed since the backup"  # outside --path: untouched
    assert main(["restore", site["name"], "--path", "../etc"]) == 2
    assert main(["restore", site["name"], "--kind", "db", "--path", "wp-content/uploads"]) == 2


def test_older_tar_archives_stay_restorable_and_are_retained_with_snapshots(make_farm, dagster_home, keyring, tmp_path):
    farm = make_farm(1)
    config, store, resource = farm_parts(farm)
    site = config.sites[0]
    enc = encrypt_argv(keyring.fingerprint, keyring.public_home)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=20)
    for day in range(10):  # ten nights of the old format, then ten in the file store
        archive_files(site, LocalRunner(), store, enc, keyring.fingerprint, now=start + timedelta(days=day))
    for day in range(10, 20):
        back_up_files(site, LocalRunner(), store, resource.repository(site.name), now=start + timedelta(days=day))
    oldest = list_backups(store, site.name, "files")[0]
    assert main(["restore", site.name, "--kind", "files", "--at", oldest.stamp, "--to-path", str(tmp_path / "old"),
                 "--gnupg-home", keyring.home]) == 0
    assert tree_digest(tmp_path / "old") == tree_digest(farm.site_root(0))

    manifests = {k: read_manifest(store, k) for k in list_backups(store, site.name, "files")}
    plan = plan_retention([k.time for k in manifests], daily=5, weekly=1, monthly=3)  # monthly is short: keeps the oldest
    report = apply_retention(store, site.name, start + timedelta(days=20), daily=5, weekly=1, monthly=3,
                             repository=resource.repository(site.name))
    kept = list_backups(store, site.name, "files")
    assert {k.time for k in kept} == set(plan) and oldest in kept
    expired = [m for k, m in manifests.items() if k.time not in plan]
    assert sorted(report.snapshots_forgotten) == sorted(m.snapshot_id for m in expired if m.is_snapshot)
    assert {o.key for o in store.list(f"{SITES}{site.name}/files/") if o.key.endswith(".gpg")} == {
        k.data_key for k in kept if not manifests[k].is_snapshot}
    assert main(["restore", site.name, "--kind", "files", "--at", oldest.stamp, "--to-path", str(tmp_path / "kept"),
                 "--gnupg-home", keyring.home]) == 0
    assert main(["restore", site.name, "--kind", "files", "--to-path", str(tmp_path / "newest")]) == 0


def test_the_inventory_bills_the_repository_and_the_integrity_check_runs_restic_check(make_farm, dagster_home):
    farm = make_farm(2)
    assert main(["backup"]) == 0
    config, store, resource = farm_parts(farm)
    broken, fine = config.sites
    frame = backup_inventory(store, [s.name for s in config.sites], datetime.now(timezone.utc))
    repository = farm.workdir / "backups" / repository_prefix(broken.name)
    billed = frame[(frame.site == broken.name) & (frame.kind == "files")].stored_bytes.item()
    assert billed > sum(f.stat().st_size for f in repository.rglob("*") if f.is_file()) > 0

    findings = backup_integrity(store, [s.name for s in config.sites], group_listing(list(store.list(SITES))),
                                repository=resource.repository)
    assert {(f.site, f.kind): f.severity for f in findings} == {(s.name, k): OK for s in config.sites for k in ("db", "files")}
    with open(next(p for p in (repository / "data").rglob("*") if p.is_file()), "ab") as pack:
        pack.write(b"damage")  # a pack that is not what the index says
    findings = backup_integrity(store, [s.name for s in config.sites], group_listing(list(store.list(SITES))),
                                repository=resource.repository)
    files = {f.site: f for f in findings if f.kind == "files"}
    assert files[broken.name].severity == CRITICAL and "restic check" in files[broken.name].reason
    assert files[fine.name].severity == OK


def test_a_snapshot_without_a_manifest_is_forgotten_once_a_day_old(make_farm):
    """Killed between restic's snapshot and wpfarm's manifest: an aborted backup, like an upload without one."""
    farm = make_farm(1)
    config, store, resource = farm_parts(farm)
    site, repository = config.sites[0], resource.repository(config.sites[0].name)
    now = datetime.now(timezone.utc)
    aborted = [back_up_files(site, LocalRunner(), store, repository, now=now - timedelta(hours=h)) for h in (50, 2)]
    kept = back_up_files(site, LocalRunner(), store, repository, now=now - timedelta(hours=1))
    store.delete([b.key.manifest_key for b in aborted])
    report = apply_retention(store, site.name, now, repository=repository)
    assert report.snapshots_forgotten == [aborted[0].manifest.snapshot_id]  # the 2-hour-old one may still get its manifest
    assert {s.id for s in repository.snapshots()} == {aborted[1].manifest.snapshot_id, kept.manifest.snapshot_id}
    assert [k.stamp for k in list_backups(store, site.name, "files")] == [kept.key.stamp]


def test_snapshot_times_are_the_stamps_whatever_the_local_time_zone(make_farm, monkeypatch):
    farm = make_farm(1)
    config, store, resource = farm_parts(farm)
    monkeypatch.setenv("TZ", "Europe/Berlin")  # child processes get TZ: restic reads --time as local time
    site = config.sites[0]
    backup = back_up_files(site, LocalRunner(), store, resource.repository(site.name))
    [snapshot] = resource.repository(site.name).snapshots()
    assert snapshot.time == backup.key.time.replace(microsecond=0)


def test_path_restores_refuse_links_on_the_way_and_take_names_literally(make_farm, dagster_home, tmp_path):
    farm = make_farm(1)
    site, root = farm.sites[0], farm.site_root(0)
    odd = root / "wp-content" / "uploads" / "up[1]"
    odd.mkdir(parents=True)
    (odd / "a.txt").write_text("literal")
    assert main(["backup"]) == 0
    (odd / "a.txt").unlink()
    assert main(["restore", site["name"], "--path", "wp-content/uploads/up[1]"]) == 0
    assert (odd / "a.txt").read_text() == "literal"

    outside = tmp_path / "outside"
    outside.mkdir()
    year = root / "wp-content" / "uploads" / "2026"
    os.rename(year, tmp_path / "moved")
    year.symlink_to(outside)  # the site's own user can do this
    assert main(["restore", site["name"], "--path", "wp-content/uploads/2026"]) == 1
    assert list(outside.iterdir()) == []


def test_files_over_the_limit_are_left_out_and_named(make_farm):
    farm = make_farm(1, max_file_bytes=1 << 20)
    config, store, resource = farm_parts(farm)
    site = config.sites[0]
    big = Path(site.content_path) / "uploads" / "huge.bin"
    big.write_bytes(os.urandom(2 << 20))
    backup = back_up_files(site, LocalRunner(), store, resource.repository(site.name),
                           max_file_bytes=config.backup.max_file_bytes)
    assert backup.manifest.skipped == [{"path": str(big), "bytes": 2 << 20}]
    assert backup.manifest.stored_bytes < 1 << 20


def test_the_restore_probe_sees_writes_not_sizes(tmp_path):
    """restic 0.14 preallocates each file it restores: the stall probe counts writes (mtimes)."""
    import time

    from wpfarm_assets.backups.restore import _writes

    staged = tmp_path / "staging"
    staged.mkdir()
    big = staged / "video.mp4"
    with open(big, "wb") as f:
        f.truncate(10 << 20)  # full size from the start, as restic makes it
    probe = _writes(LocalRunner(), str(staged))
    time.sleep(0.05)
    with open(big, "r+b") as f:
        f.write(b"data")
    first, idle = probe(), probe()
    time.sleep(0.05)
    with open(big, "r+b") as f:
        f.write(b"more")
    assert (first, idle, probe()) == (1, 1, 2)
