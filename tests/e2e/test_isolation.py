"""One site's failure neither fails nor hides the others; a retry of exactly the failed ones completes."""

import dagster as dg
import yaml

from wpfarm_assets.cli import main
from wpfarm_assets.demo import DemoSize, create_site_database
from wpfarm_assets.partitions import sites


def statuses(names, asset):
    status = dg.DagsterInstance.get().get_status_by_partition(dg.AssetKey(asset), names, sites)
    return {name for name, st in status.items() if st == dg.AssetPartitionStatus.FAILED}, \
        {name for name, st in status.items() if st == dg.AssetPartitionStatus.MATERIALIZED}


def test_three_broken_sites_fail_alone_and_retrying_exactly_them_completes(
        make_farm, dagster_home, db, sshd, backup_user, shared_dir, s3, capsys):
    # restic on the storage node (as the unprivileged backup user) writes to the S3 target itself.
    # Three runs of two sites; one broken site in each run, beside one that must still succeed.
    farm = make_farm(6, storage_ssh={**sshd.config(), "user": backup_user}, content_root=shared_dir, sites_per_run=2,
                     target=f"s3://{s3.new_bucket()}/farm", s3_endpoint_url=s3.endpoint)
    names = [s["name"] for s in farm.sites]
    missing_db, bad_path, unreadable = farm.sites[1], farm.sites[3], farm.sites[5]
    db.drop_database(missing_db["database"])
    config = yaml.safe_load(farm.config_path.read_text())
    config["sites"][3]["content_path"] = str(shared_dir / "gone" / "wp-content")
    farm.config_path.write_text(yaml.safe_dump(config))
    secret = next((farm.site_root(5) / "wp-content" / "uploads").rglob("*.jpg"))
    secret.chmod(0o600)  # root's file; the backup user may not read it

    assert main(["backup"]) == 1
    err = capsys.readouterr().err
    assert f"site {missing_db['name']}: database backup failed: database" in err
    assert f"site {bad_path['name']}: files backup failed: content path" in err
    assert f"site {unreadable['name']}: files backup failed" in err and "permission denied" in err.lower()
    assert statuses(names, "database_dump") == ({missing_db["name"]}, set(names) - {missing_db["name"]}), err
    assert statuses(names, "file_archive") == ({bad_path["name"], unreadable["name"]},
                                               set(names) - {bad_path["name"], unreadable["name"]}), err

    create_site_database(db, missing_db["database"], missing_db["name"], DemoSize(posts=30, uploads=3), seed=1)
    config["sites"][3]["content_path"] = bad_path["content_path"]
    farm.config_path.write_text(yaml.safe_dump(config))
    secret.chmod(0o644)
    instance = dg.DagsterInstance.get()
    runs_before = len(instance.get_run_records())

    assert main(["backup", "--failed"]) == 0
    out = capsys.readouterr().out
    assert "database_dump: 1 failed site(s) to retry" in out and "file_archive: 2 failed site(s) to retry" in out
    assert statuses(names, "database_dump") == (set(), set(names))
    assert statuses(names, "file_archive") == (set(), set(names))
    runs = [r.dagster_run.job_name for r in instance.get_run_records()][: len(instance.get_run_records()) - runs_before]
    assert runs.count("back_up_sites") == 3  # one run per failed partition range, no more
    assert set(runs) == {"back_up_sites", "apply_retention", "check_backup_health"} and runs.count("apply_retention") <= 3
    assert runs.count("check_backup_health") == 1  # once, after all of them
    for asset in ("database_dump", "file_archive"):
        events = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
        assert len(events) == len(names)  # nobody was backed up twice
