"""Scripts outside the package (benchmarks, asset builders) are not imported by other tests: at least
make sure each one compiles and documents how to run it, so they do not rot silently."""

import ast
import py_compile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("manifests/fixtures/*.py")])


def test_there_are_benchmarks_for_the_measured_claims():
    names = {p.name for p in SCRIPTS}
    assert {"unet_step.py", "plan_samples.py", "balance_overhead.py"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_compiles_and_has_a_docstring(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "x.pyc"), doraise=True)
    assert ast.get_docstring(ast.parse(script.read_text())), f"{script.name}: say what it measures/makes and how to run it"
