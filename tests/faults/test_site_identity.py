"""A site pointed at another site's database (two farm.yaml entries that swapped databases) backs up
the wrong site: each dump records the address it holds, the next backup of each warns naming both
addresses (status, the age check), and an in-place restore of one into the database that now holds
the other's address is refused without --force."""

from datetime import datetime, timedelta, timezone

import yaml

from wpfarm_assets.backups.restore import list_backups
from wpfarm_assets.backups.verify import read_manifest
from wpfarm_assets.cli import instance, main, run_job, store_of
from wpfarm_assets.core.config import load_config
from wpfarm_assets.partitions import run_tags


def test_swapped_databases_warn_naming_both_addresses_and_an_in_place_restore_needs_force(make_farm, dagster_home,
                                                                                         db, capsys):
    farm = make_farm(2)
    one, two = (s["name"] for s in farm.sites)
    assert main(["backup"]) == 0
    assert main(["status"]) == 0, capsys.readouterr()
    store = store_of(load_config())
    first = read_manifest(store, list_backups(store, one, "db")[-1])
    assert (first.siteurl, first.home, first.site_addresses, first.identity) == (
        f"https://{one}", f"https://{one}", [f"https://{one}"], None)

    raw = yaml.safe_load(farm.config_path.read_text())
    raw["sites"][0]["database"], raw["sites"][1]["database"] = raw["sites"][1]["database"], raw["sites"][0]["database"]
    farm.config_path.write_text(yaml.safe_dump(raw))
    assert main(["backup"]) == 0  # the dumps themselves work: it is the wrong site that they hold
    capsys.readouterr()
    assert main(["status"]) == 1
    shown = capsys.readouterr().out
    for site, other in ((one, two), (two, one)):
        row = next(line for line in shown.splitlines() if line.startswith(site) and " db " in line)
        assert "WARNING" in row and f"siteurl https://{other}" in row and f"(https://{site})" in row, row
        newest = read_manifest(store, list_backups(store, site, "db")[-1])
        assert newest.siteurl == f"https://{other}" and newest.site_addresses == [f"https://{site}"]  # not adopted
    # Retention two days on (it removes objects without a manifest a day old) keeps the flag with its dump.
    later = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    assert run_job("apply_retention", load_config(), instance(), tags=run_tags([one]),
                   run_config={"ops": {"retention": {"config": {"as_of": later}}}}).success
    capsys.readouterr()
    main(["status"])
    assert "WARNING" in next(line for line in capsys.readouterr().out.splitlines()
                             if line.startswith(one) and " db " in line)
    # A third backup still knows which address is the site's: the warning does not fade into the record.
    assert main(["backup", one]) == 0
    capsys.readouterr()
    main(["status"])
    assert "WARNING" in next(line for line in capsys.readouterr().out.splitlines()
                             if line.startswith(one) and " db " in line)

    # In place, site one's database is now the one that holds site two: its restore would overwrite site two.
    before = db.checksums(raw["sites"][0]["database"])
    oldest = list_backups(store, one, "db")[0].stamp  # site one's own dump, from before the swap
    restore = ["restore", one, "--kind", "db", "--at", oldest, "--gnupg-home", farm.keyring.home]
    assert main(restore) == 1
    refused = capsys.readouterr().err
    assert f"holds home https://{two}, siteurl https://{two}, not the address of site {one}" in refused, refused
    assert "--force" in refused
    assert db.checksums(raw["sites"][0]["database"]) == before  # nothing was loaded
    assert main([*restore, "--force"]) == 0
    assert db.query(f"SELECT option_value FROM {raw['sites'][0]['database']}.wp_options "
                    "WHERE option_name = 'siteurl'") == [[f"https://{one}"]]

    # farm.yaml put right again: a restore without --at passes over the dumps that hold site two.
    raw["sites"][0]["database"], raw["sites"][1]["database"] = raw["sites"][1]["database"], raw["sites"][0]["database"]
    farm.config_path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["restore", one, "--kind", "db", "--gnupg-home", farm.keyring.home]) == 0
    out = capsys.readouterr()
    assert f"from sites/{one}/db/{oldest}" in out.out, out
    assert out.err.count("another site's dump, passed over") >= 1 and f"https://{two}" in out.err, out.err
    assert db.query(f"SELECT option_value FROM {raw['sites'][0]['database']}.wp_options "
                    "WHERE option_name = 'siteurl'") == [[f"https://{one}"]]
