"""The image's entry point turns Swarm secrets into environment variables and runs the command."""

import subprocess
from pathlib import Path

ENTRYPOINT = Path(__file__).resolve().parents[2] / "scripts" / "container-entrypoint"


def test_secrets_become_environment_variables_and_odd_names_are_skipped(tmp_path):
    (tmp_path / "spaces_access_key_id").write_text("AKIA-test\n")
    (tmp_path / "wpfarm_db_password").write_text("p@ss 'with' $(quotes)")
    (tmp_path / "9lives").write_text("x")
    (tmp_path / "bad name").write_text("x")
    out = subprocess.run([str(ENTRYPOINT), "env"], env={"WPFARM_SECRETS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    env = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert env["SPACES_ACCESS_KEY_ID"] == "AKIA-test"
    assert env["WPFARM_DB_PASSWORD"] == "p@ss 'with' $(quotes)"  # taken as data, never evaluated
    assert "9LIVES" not in env and "BAD NAME" not in env
    assert "9lives has no usable name" in out.stderr and "bad name has no usable name" in out.stderr


def test_without_secrets_the_command_just_runs(tmp_path):
    out = subprocess.run([str(ENTRYPOINT), "echo", "ok"], env={"WPFARM_SECRETS_DIR": str(tmp_path / "none"),
                                                                 "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, "ok\n")
