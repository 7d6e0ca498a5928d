"""The house rules of ARCHITECTURE.md, checked on the source: Dagster stays in the files that
define Dagster objects; the core depends on nothing of ours but itself; resources on the core only."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAGSTER_FILES = {"assets.py", "checks.py", "jobs.py", "ops.py"}
DAGSTER_MODULES = {"definitions.py", "partitions.py", "dagster_storage.py"}  # top of wpfarm_assets/, and cli/


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def sources(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    return files


def test_only_the_dagster_files_of_wpfarm_assets_import_dagster():
    offenders = []
    for path in sources("wpfarm_assets"):
        allowed = (path.name in DAGSTER_FILES or path.parent.name == "cli"
                   or (path.parent.name == "wpfarm_assets" and path.name in DAGSTER_MODULES))
        if not allowed and any(top(m).startswith("dagster") for m in imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_core_imports_neither_dagster_nor_resources_nor_the_other_domains():
    offenders = {}
    for path in sources("wpfarm_assets/core"):
        bad = {m for m in imports(path) if top(m).startswith("dagster") or top(m) in ("resources", "sensors", "schedules")
               or (m.startswith("wpfarm_assets.") and not m.startswith("wpfarm_assets.core"))}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_resources_depend_on_wpfarm_assets_core_only():
    offenders = {}
    for path in sources("resources"):
        bad = {m for m in imports(path) if top(m) in ("sensors", "schedules")
               or (top(m) == "wpfarm_assets" and not m.startswith("wpfarm_assets.core"))}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_the_rules_see_a_violation():
    """The walker finds imports inside functions too (a rule that cannot fail proves nothing)."""
    sample = ROOT / "wpfarm_assets" / "cli" / "backup.py"
    assert "dagster" in imports(sample) and "wpfarm_assets.backups.assets" in imports(sample)


def test_farm_yaml_is_read_in_a_handful_of_places():
    calls = {}
    for folder in ("wpfarm_assets", "resources", "sensors", "schedules"):
        for path in sources(folder):
            tree = ast.parse(path.read_text())
            n = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("load_config", "reread"))
            if n:
                calls[str(path.relative_to(ROOT))] = n
    # definitions (once per code location load), the CLI (its commands; the demo and site create,
    # which write the file), FarmConfig.reread, and the inventory sensor, whose job is to see the file change.
    assert set(calls) == {"wpfarm_assets/definitions.py", "wpfarm_assets/cli/__init__.py", "wpfarm_assets/cli/farm.py",
                          "wpfarm_assets/core/config.py", "sensors/site_inventory.py"}, calls
    assert sum(calls.values()) <= 8, calls
