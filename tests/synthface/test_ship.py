"""`facegen synthface ship`: a float16 preset folder with its build info and, when asked, its own sampler."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from facegen.model.pipeline import FaceCrafterPipeline
from facegen.model.schedulers import scheduler_name


def _ship(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facegen.cli.main", "synthface", "ship", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_ship_stores_fp16_weights_build_info_and_the_chosen_sampler(tiny_model_dir, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "joint.yaml").write_text("stage: joint\nsteps: 3\n")
    out = tmp_path / "preset"
    run = _ship("--model", str(tiny_model_dir), "--out", str(out), "--configs", str(configs), "--scheduler", "dpmpp-sde",
                "--command", "make synthface-pixel", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    pipe = FaceCrafterPipeline.from_pretrained(out)
    assert scheduler_name(pipe.scheduler) == "dpmpp-sde"
    assert scheduler_name(FaceCrafterPipeline.from_pretrained(tiny_model_dir).scheduler) != "dpmpp-sde"
    build = json.loads((out / "model_index.json").read_text())["provenance"]["build"]
    assert build["command"] == "make synthface-pixel" and build["configs"] == {"joint": {"stage": "joint", "steps": 3}}
    from safetensors.torch import load_file

    weights = load_file(next((out / "unet").glob("*.safetensors")))
    assert {v.dtype for v in weights.values()} == {torch.float16}


def test_ship_refuses_an_unknown_sampler_in_one_line(tiny_model_dir, tmp_path):
    run = _ship("--model", str(tiny_model_dir), "--out", str(tmp_path / "p"), "--scheduler", "euler", cwd=tmp_path)
    assert run.returncode == 2
    assert "unknown scheduler 'euler'" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "p").exists()
