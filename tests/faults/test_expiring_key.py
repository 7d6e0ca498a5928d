"""The farm key expires: wpfarm says so a month ahead (warning), a week ahead and after (critical),
and a backup with an expired key fails first with that reason, before any dump is started. Keys
made by gpg itself, the expired one with `--faked-system-time`."""

import subprocess
import time
from datetime import datetime, timezone

from wpfarm_assets.backups.health import CRITICAL, WARNING, farm_key
from wpfarm_assets.cli import main


def key(home: str, name: str, expire_days: int, created_days_ago: int = 0) -> str:
    """An ed25519 key with a cv25519 encryption subkey, expiring `expire_days` after it was made."""
    argv = ["gpg", "--batch", "--homedir", home, "--passphrase", ""]
    if created_days_ago:
        argv += ["--faked-system-time", f"{int(time.time()) - created_days_ago * 86400}!"]
    subprocess.run([*argv, "--quick-gen-key", name, "default", "default", f"{expire_days}d"], check=True,
                   capture_output=True)
    listed = subprocess.run(["gpg", "--batch", "--homedir", home, "--with-colons", "--list-keys", name],
                            capture_output=True, text=True, check=True).stdout
    return next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))


def test_an_expiring_key_warns_then_is_critical_and_an_expired_one_stops_the_dump_first(make_farm, dagster_home,
                                                                                        tmp_path, capsys):
    home = tmp_path / "expiring"
    home.mkdir(mode=0o700)
    ten, three = key(str(home), "ten days", 10), key(str(home), "three days", 3)
    expired = key(str(home), "expired yesterday", 4, created_days_ago=5)
    now = datetime.now(timezone.utc)
    soon, very_soon, gone = (farm_key(fp, str(home), now) for fp in (ten, three, expired))
    assert (soon.severity, very_soon.severity, gone.severity) == (WARNING, CRITICAL, CRITICAL)
    assert "in 9.9 days" in soon.reason or "in 10.0 days" in soon.reason, soon.reason
    assert ten in soon.reason and "expired on" in gone.reason and expired in gone.reason

    farm = make_farm(1, gpg_recipient=expired, gpg_home=str(home))
    assert main(["backup"]) == 1
    failed = capsys.readouterr().err
    reason = next(line for line in failed.splitlines() if "database_dump" in line)
    assert f"not started: the farm key {expired} expired on" in reason, failed  # the cause first, by name
    assert "Unusable public key" not in failed and "mariadb-dump" not in failed
    dumps = farm.workdir / "backups" / "sites" / farm.sites[0]["name"] / "db"
    assert not dumps.exists() or not any(dumps.iterdir())  # no dump was started, nothing written
    assert (farm.workdir / "backups" / "sites" / farm.sites[0]["name"] / "files").exists()  # restic needs no gpg key

    assert main(["status"]) == 1
    shown = capsys.readouterr().out
    row = next(line for line in shown.splitlines() if line.startswith("farm") and " key " in line)
    assert "CRITICAL" in row and "expired on" in row, shown
