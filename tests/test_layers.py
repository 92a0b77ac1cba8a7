"""The layers are a contract (pyproject.toml [tool.importlinter]): an app imports only the apps below it."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
pytestmark = pytest.mark.no_services


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(linter), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_import_between_apps_points_down():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("statement", [
    "from gateway.app import dispatch",  # at module level
    "def later():\n    from usage.models import RequestLog\n    return RequestLog",  # hidden in a function
])
def test_an_upward_import_breaks_the_build(tmp_path, statement):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "orgs" / "services.py", "a") as module:
        module.write(f"\n\n{statement}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "Apps import down only BROKEN" in result.stdout and "orgs is not allowed to import" in result.stdout
