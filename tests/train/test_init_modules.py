"""`init_landmark` / `init_emotion`: pre-trained modules replace the input model's (weights when the design
matches, the whole module when a new design serves the same layers), and mismatches are one-line errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from facegen.errors import FacegenError
from facegen.model.attention import facecrafter_processors
from facegen.model.controls import LandmarkControlModule
from facegen.model.loading import load_components
from facegen.train.config import stage_config_from_dict
from facegen.train.weights import load_init_modules


def _with_landmark(tiny_model_dir, tmp_path, **changes):
    """A copy of the tiny model folder whose landmark module is rebuilt with `changes` to its config."""
    folder = tmp_path / "other"
    shutil.copytree(tiny_model_dir, folder)
    original = load_components(tiny_model_dir).landmark
    config = {k: v for k, v in dict(original.config).items() if not k.startswith("_")}
    config.update(changes)
    torch.manual_seed(1)
    module = LandmarkControlModule(**config)
    shutil.rmtree(folder / "landmark")
    module.save_pretrained(folder / "landmark", safe_serialization=True)
    return folder, module


def _cfg(tiny_model_dir, tmp_path, source):
    return stage_config_from_dict(
        {"data": str(tmp_path), "model": str(tiny_model_dir), "output": str(tmp_path / "o"), "steps": 1,
         "batch_size": 2, "init_landmark": str(source)}, "pretrain-lmk")


def test_a_new_design_replaces_the_whole_module_and_its_attention(tiny_model_dir, tmp_path):
    source, module = _with_landmark(tiny_model_dir, tmp_path, spatial_prior_width=1.0, zero_init_values=True)
    components = load_components(tiny_model_dir)
    assert components.landmark.config.spatial_prior_width is None
    load_init_modules(components, _cfg(tiny_model_dir, tmp_path, source))
    assert components.landmark.config.spatial_prior_width == 1.0
    assert all(p._controls["lmk"] is components.landmark for p in facecrafter_processors(components.unet))
    for a, b in zip(components.landmark.state_dict().values(), module.state_dict().values()):
        assert torch.equal(a, b)


def test_the_same_design_loads_weights_in_place(tiny_model_dir, tmp_path):
    source, module = _with_landmark(tiny_model_dir, tmp_path)
    components = load_components(tiny_model_dir)
    before = components.landmark
    load_init_modules(components, _cfg(tiny_model_dir, tmp_path, source))
    assert components.landmark is before
    assert torch.equal(components.landmark.cnn[0].weight, module.cnn[0].weight)


def test_a_module_for_other_layers_is_refused(tiny_model_dir, tmp_path):
    components = load_components(tiny_model_dir)
    dims = [2 * int(d) for d in components.landmark.config.layer_dims]
    source, _ = _with_landmark(tiny_model_dir, tmp_path, layer_dims=dims, spatial_prior_width=1.0)
    with pytest.raises(FacegenError, match="layer_dims"):
        load_init_modules(components, _cfg(tiny_model_dir, tmp_path, source))
