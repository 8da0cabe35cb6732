"""`lint-imports` (import-linter, contracts in pyproject.toml) passes on the package and fails on a violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def run_lint(cwd: Path, package_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    result = run_lint(REPO, REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("facegen/model/_violation.py", "import facegen.runner.generation\n", "runner or the CLI"),
        ("facegen/conditions/_violation.py", "from facegen.manifest import schema\n", "Layers"),
        ("facegen/train/_violation.py", "", "cycles"),
    ],
)
def test_import_contracts_catch_violations(tmp_path: Path, module: str, source: str, contract: str):
    shutil.copytree(REPO / "facegen", tmp_path / "facegen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    if not source:  # a cycle inside a package: pairs imports data, which imports pairs
        pairs = tmp_path / "facegen" / "train" / "pairs.py"
        pairs.write_text(pairs.read_text() + "\nfrom facegen.train import data  # noqa: E402\n")
    else:
        (tmp_path / module).write_text(source)
    result = run_lint(tmp_path, tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout[-3000:]
