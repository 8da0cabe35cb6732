"""Cluster submission: the job specs and cluster.yaml are valid for Ray 2.60, and `facegen submit` builds
the `ray job submit` command a user would type."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facegen.errors import FacegenError
from facegen.runner.submit import build_job_command, load_pipeline

REPO = Path(__file__).resolve().parents[2]


def test_cluster_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(fillout_defaults(config))  # raises on any schema violation
    gpu_types = [n for n, t in config["available_node_types"].items() if t["node_config"]["InstanceType"].startswith(("p4d", "g5"))]
    assert gpu_types and config["head_node_type"] not in gpu_types
    assert any("constraints-gpu.txt" in c for c in config["setup_commands"])
    assert any("s3 sync" in c for c in config["setup_commands"])


@pytest.mark.parametrize("spec", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_specs_build_a_job_command(spec):
    pipeline = load_pipeline(spec)
    job = build_job_command([], spec=pipeline, address="http://head:8265")
    argv = job.argv
    assert argv[:5] == ["ray", "job", "submit", "--address", "http://head:8265"]
    assert argv[argv.index("--") + 1 : argv.index("--") + 3] == ["facegen", "balance"]
    runtime_env = yaml.safe_load(Path(argv[argv.index("--runtime-env") + 1]).read_text())
    assert runtime_env["working_dir"] == "."
    assert job.env["RAY_AUTH_MODE"] in ("token", "disabled")
    # Every option in the spec exists on facegen's own command (no typos that fail on the cluster).
    import typer

    from facegen.cli.main import app

    facegen_args = argv[argv.index("--") + 2 :]
    command = typer.main.get_command(app).commands[facegen_args[0]]  # type: ignore[attr-defined]
    known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for option in (a for a in facegen_args if a.startswith("--")):
        assert option in known, option


def test_submit_dry_run_prints_the_command(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    proc = subprocess.run(
        [sys.executable, "-m", "facegen.cli.main", "submit", "--address", "http://h:8265", "--dry-run", "--",
         "balance", "-m", "manifests/demo.yaml", "-o", "s3://bucket/ds"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout)
    assert words[0] == "RAY_AUTH_MODE=token"
    assert words[1:] == ["ray", "job", "submit", "--address", "http://h:8265", "--working-dir", ".", "--",
                         "facegen", "balance", "-m", "manifests/demo.yaml", "-o", "s3://bucket/ds"]


def test_submit_without_a_command_is_a_user_error():
    with pytest.raises(FacegenError, match="nothing to run"):
        build_job_command([])
