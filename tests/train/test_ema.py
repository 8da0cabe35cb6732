"""The moving average of the trained weights (`ema_decay`): its arithmetic against a closed form, that a
run keeps it in its checkpoints, resumes it exactly, and that the export ships it instead of the raw weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from facegen.train.config import stage_config_from_dict
from facegen.train.ema import ParameterEMA


def test_ema_matches_the_closed_form_weighted_average():
    values = [torch.full((3,), float(v)) for v in (4.0, -2.0, 7.0, 1.0, 3.0)]
    ema = ParameterEMA({"w": values[0]}, decay=0.5)
    for v in values[1:]:
        ema.update({"w": v})
    # decays used: min(0.5, (1+n)/(10+n)) = 0.1, 0.1667, 0.25, 0.3077 -> weights of each value, written out
    decays = [min(0.5, (1 + n) / (10 + n)) for n in range(4)]
    weights = [1.0]
    for d in decays:
        weights = [w * d for w in weights] + [1.0 - d]
    expected = sum(w * float(v[0]) for w, v in zip(weights, values))
    assert abs(sum(weights) - 1.0) < 1e-12
    assert torch.allclose(ema.state_dict()["w"], torch.full((3,), expected), atol=1e-6)
    assert ema.updates == 4


def test_ema_is_float32_and_leaves_the_parameters_alone():
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float16))
    ema = ParameterEMA({"p": p}, decay=0.99)
    ema.update({"p": p.detach() * 3})
    assert ema.state_dict()["p"].dtype == torch.float32
    assert torch.equal(p.detach(), torch.ones(2, dtype=torch.float16))
    with pytest.raises(ValueError, match="decay"):
        ParameterEMA({"p": p}, decay=1.0)
    with pytest.raises(KeyError, match="lacks"):
        ema.load_state_dict({}, 1)


def test_bad_ema_decay_is_a_config_error():
    with pytest.raises(Exception, match="ema_decay"):
        stage_config_from_dict({"data": "d", "model": "m", "output": "o", "steps": 1, "batch_size": 2, "ema_decay": 1.5}, "base")


class _Killed(Exception):
    pass


def _run(data, model, out, session, **extra):
    from facegen.train.loop import run_recipe

    raw = {"data": str(data), "model": str(model), "output": str(out), "steps": 4, "batch_size": 4,
           "checkpoint_every": 2, "lr": 2e-3, "ema_decay": 0.9, "uncond_prob": 0.5, **extra}
    run_recipe(stage_config_from_dict(raw, "base"), session)


def _killed_after_first_checkpoint(root):
    """A LocalSession that dies right after writing its first checkpoint."""
    from facegen.train.loop import LocalSession

    class Killed(LocalSession):
        def report(self, metrics, checkpoint_dir):
            super().report(metrics, checkpoint_dir)
            if checkpoint_dir is not None:
                raise _Killed

    return Killed(root)


@pytest.mark.slow
def test_a_run_keeps_resumes_and_exports_its_ema(tiny_model_dir, extracted_dir, tmp_path):
    from facegen.model.folder import read_model_info
    from facegen.model.loading import load_components
    from facegen.train.loop import LocalSession
    from facegen.train.trainee import Trainee
    from facegen.train.weights import export_model

    straight = LocalSession(tmp_path / "straight")
    _run(extracted_dir, tiny_model_dir, tmp_path / "a", straight)
    with pytest.raises(_Killed):
        _run(extracted_dir, tiny_model_dir, tmp_path / "b", _killed_after_first_checkpoint(tmp_path / "resumed"))
    resumed = LocalSession(tmp_path / "resumed")
    _run(extracted_dir, tiny_model_dir, tmp_path / "b", resumed)

    last = straight.latest()
    assert json.loads((last / "state.json").read_text())["ema_updates"] == 4
    ema, raw = load_file(str(last / "ema.safetensors")), load_file(str(last / "trainable.safetensors"))
    assert ema.keys() == raw.keys()
    assert any(not torch.allclose(ema[k], raw[k]) for k in ema)  # an average, not a copy of the last step
    resumed_ema = load_file(str(resumed.latest() / "ema.safetensors"))
    assert all(torch.equal(ema[k], resumed_ema[k]) for k in ema)  # resumed exactly, not restarted

    cfg = stage_config_from_dict({"data": str(extracted_dir), "model": str(tiny_model_dir), "output": str(tmp_path / "a"),
                                  "steps": 4, "batch_size": 4, "ema_decay": 0.9}, "base")
    shipped = {}
    for name, use_ema in (("ema", True), ("raw", False)):
        folder = export_model(cfg, last, tmp_path / f"model_{name}", use_ema=use_ema)
        shipped[name] = Trainee(load_components(folder), "base").trainable_state_dict()
        history = read_model_info(folder).source["training"][-1]
        assert history["weights"].startswith("ema") == use_ema
    for k in ema:
        assert torch.allclose(shipped["ema"][k], ema[k].to(shipped["ema"][k].dtype), atol=1e-6), k
        assert torch.allclose(shipped["raw"][k], raw[k].to(shipped["raw"][k].dtype), atol=1e-6), k


@pytest.mark.slow
def test_ema_start_equals_turning_the_ema_on_at_a_resume(tiny_model_dir, extracted_dir, tmp_path):
    """How synthface round 5a ran: 3,000 steps without an EMA, resumed with one. `ema_start` rebuilds it."""
    from facegen.train.loop import LocalSession

    straight = LocalSession(tmp_path / "straight")
    _run(extracted_dir, tiny_model_dir, tmp_path / "a", straight, ema_start=2)
    with pytest.raises(_Killed):
        _run(extracted_dir, tiny_model_dir, tmp_path / "b", _killed_after_first_checkpoint(tmp_path / "resumed"), ema_decay=None)
    assert not (LocalSession(tmp_path / "resumed").latest() / "ema.safetensors").exists()
    resumed = LocalSession(tmp_path / "resumed")
    _run(extracted_dir, tiny_model_dir, tmp_path / "b", resumed)
    a, b = (load_file(str(s.latest() / "ema.safetensors")) for s in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((straight.latest() / "state.json").read_text())["ema_updates"] == 2
    with pytest.raises(Exception, match="ema_start"):
        stage_config_from_dict({"data": "d", "model": "m", "output": "o", "steps": 1, "batch_size": 2, "ema_start": 5}, "base")
