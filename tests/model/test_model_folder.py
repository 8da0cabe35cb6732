"""Model folders: tiny preset determinism, save -> load round trip, Arc2Face published-layout assembly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from facegen.errors import FacegenError
from facegen.model.loading import load_components, model_hash, read_model_info, save_components
from facegen.model.pipeline import FaceCrafterPipeline
from facegen.model.presets import SD15_SCHEDULER_CONFIG, assemble_arc2face_model, init_tiny_model, write_tiny_tokenizer

LAYOUT = ("unet", "text_encoder", "vae", "tokenizer", "scheduler", "landmark", "emotion")


def test_tiny_folder_layout_and_self_description(tiny_model_dir: Path):
    marker = json.loads((tiny_model_dir / "facegen.json").read_text())
    assert marker == {"format": "facegen-model", "format_version": 2}
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "FaceCrafterPipeline" and "_name_or_path" not in index
    assert index["landmark"] == ["facegen.model.controls", "LandmarkControlModule"]
    assert index["emotion"] == ["facegen.model.controls", "EmotionControlModule"]
    assert index["resolution"] == 64 and index["landmark_image_size"] == 64 and index["model_name"] == "tiny"
    assert (index["guidance_id"], index["guidance_lmk"], index["guidance_emo"]) == (2.5, 2.0, 2.0)
    assert index["id_prompt"] == "photo of a id person" and index["num_inference_steps"] == 25
    for part in LAYOUT:
        assert (tiny_model_dir / part).is_dir() and part in index
    info = read_model_info(tiny_model_dir)
    assert info.format_version == 2 and info.parts["encoder"] == "text_encoder" and info.source["preset"] == "tiny"
    assert {"photo</w>", "of</w>", "a</w>", "id</w>", "person</w>"} <= set(CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer").get_vocab())
    # the scheduler config is stored without its class defaults (so swapping schedulers after a reload
    # gets each class's own defaults, as before saving)
    scheduler = json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DPMSolverMultistepScheduler" and scheduler["algorithm_type"] == "dpmsolver++"
    assert "timestep_spacing" not in scheduler and scheduler["steps_offset"] == 1
    # K/V live in the control-module files, not in the UNet file
    landmark = load_file(tiny_model_dir / "landmark" / "diffusion_pytorch_model.safetensors")
    assert sum(k.startswith("kv.") for k in landmark) == 4 * 2
    unet = load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    assert not any("kv" in k for k in unet)


def test_tiny_preset_is_deterministic_per_seed(tiny_model_dir: Path, tmp_path: Path):
    same = init_tiny_model(tmp_path / "same", seed=0)
    other = init_tiny_model(tmp_path / "other", seed=1)
    assert model_hash(same) == model_hash(tiny_model_dir)
    assert model_hash(other) != model_hash(tiny_model_dir)
    with pytest.raises(FacegenError, match="not empty"):
        init_tiny_model(same, seed=0)


def test_save_load_round_trip_gives_identical_outputs(tiny_pipe, tiny_model_dir: Path, tmp_path: Path, conditions):
    copy = save_components(load_components(tiny_model_dir), tmp_path / "copy")
    for part in ("unet", "vae", "landmark", "emotion"):
        a = load_file(next((tiny_model_dir / part).glob("*.safetensors")))
        b = load_file(next((copy / part).glob("*.safetensors")))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    reloaded = FaceCrafterPipeline.from_pretrained(copy)
    cond = conditions(2, 64, seed=3)
    kwargs = dict(use_lmk=torch.tensor([True, False]), use_emo=torch.tensor([True, True]), seeds=[5, 6],
                  num_inference_steps=3, output_type="np")
    assert np.array_equal(tiny_pipe(**cond, **kwargs).images, reloaded(**cond, **kwargs).images)


def test_bad_model_folders_are_user_errors(tmp_path: Path, tiny_model_dir: Path, legacy_model_dir: Path):
    with pytest.raises(FacegenError, match="facegen.json"):
        read_model_info(tmp_path)
    with pytest.raises(FacegenError, match="does not exist"):
        FaceCrafterPipeline.from_pretrained(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(legacy_model_dir, broken)
    info = json.loads((broken / "facegen.json").read_text())
    (broken / "facegen.json").write_text(json.dumps({**info, "resolution": -1}))
    with pytest.raises(FacegenError, match="resolution"):
        read_model_info(broken)
    new = tmp_path / "new"
    shutil.copytree(tiny_model_dir, new)
    (new / "facegen.json").write_text(json.dumps({"format": "facegen-model", "format_version": 3}))
    with pytest.raises(FacegenError, match="newer"):
        read_model_info(new)
    shutil.copyfile(tiny_model_dir / "facegen.json", new / "facegen.json")
    index = json.loads((new / "model_index.json").read_text())
    (new / "model_index.json").write_text(json.dumps({**index, "resolution": 0}))
    with pytest.raises(FacegenError, match="resolution"):
        read_model_info(new)
    (new / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(new / "emotion")
    with pytest.raises(FacegenError, match="emotion"):
        read_model_info(new)
    with pytest.raises(FacegenError, match="emotion"):
        FaceCrafterPipeline.from_pretrained(new)


# --- Arc2Face published layout ----------------------------------------------------------------


def write_published_layout(tiny_model_dir: Path, root: Path) -> tuple[Path, Path]:
    """Arc2Face's hub layout (encoder as a transformers-4.x pytorch_model.bin) + an SD1.5 folder."""
    arc2face, sd15 = root / "arc2face-hub", root / "sd15"
    (arc2face / "arc2face").mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copyfile(tiny_model_dir / "unet" / name, arc2face / "arc2face" / name)
    (arc2face / "encoder").mkdir()
    shutil.copyfile(tiny_model_dir / "text_encoder" / "config.json", arc2face / "encoder" / "config.json")
    flat = load_file(tiny_model_dir / "text_encoder" / "model.safetensors")
    state = {("text_model." + k.removeprefix("text_model.")): v for k, v in flat.items()}
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    torch.save(state, arc2face / "encoder" / "pytorch_model.bin")
    sd15.mkdir()
    write_tiny_tokenizer(sd15 / "tokenizer")
    shutil.copytree(tiny_model_dir / "vae", sd15 / "vae")
    (sd15 / "scheduler").mkdir()
    (sd15 / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER_CONFIG))
    return arc2face, sd15


def test_assemble_from_published_layout(tiny_pipe, tiny_model_dir: Path, tmp_path: Path, conditions):
    arc2face, sd15 = write_published_layout(tiny_model_dir, tmp_path)
    out = assemble_arc2face_model(arc2face, sd15, tmp_path / "model")
    assert not list((out / "text_encoder").glob("*.bin")) and (out / "text_encoder" / "model.safetensors").is_file()
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text()) == json.loads(
        (tiny_model_dir / "scheduler" / "scheduler_config.json").read_text()
    )
    comps = load_components(out)
    ids = conditions(2, 64)["id_embeds"]
    with torch.no_grad():
        assert torch.equal(comps.identity_encoder(ids), tiny_pipe.identity_encoder(ids))
    for (k, a), (k2, b) in zip(comps.unet.state_dict().items(), tiny_pipe.unet.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # fresh control modules start with zero values: switching a branch on changes nothing yet
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        context = comps.identity_encoder(ids)
        tokens = comps.landmark(torch.rand(2, 3, 256, 256))
        emo = comps.emotion(torch.rand(2, 10))

        def run(scale):
            kwargs = {"lmk_tokens": tokens, "emo_tokens": emo, "lmk_scale": scale, "emo_scale": scale}
            return comps.unet(latents, 300, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample

        assert torch.equal(run(torch.ones(2)), run(torch.zeros(2)))
    assert read_model_info(out).landmark_image_size == 256


def test_assembly_names_every_missing_file(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "s").mkdir()
    with pytest.raises(FacegenError) as err:
        assemble_arc2face_model(tmp_path / "a", tmp_path / "s", tmp_path / "out")
    message = str(err.value)
    for name in ("arc2face/config.json", "arc2face/diffusion_pytorch_model.safetensors", "encoder/pytorch_model.bin",
                 "vae/config.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"):
        assert name in message
    assert not (tmp_path / "out").exists()


def test_encoder_bin_is_loaded_without_arbitrary_pickles(tiny_model_dir: Path, tmp_path: Path):
    arc2face, sd15 = write_published_layout(tiny_model_dir, tmp_path)
    torch.save({"text_model.final_layer_norm.weight": os.getcwd}, arc2face / "encoder" / "pytorch_model.bin")
    with pytest.raises(FacegenError, match="pytorch_model.bin"):
        assemble_arc2face_model(arc2face, sd15, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_model_hash_follows_weights_not_provenance(tiny_model_dir: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, "provenance": {"arc2face": "/somewhere/else"}}))
    assert model_hash(copy) == model_hash(tiny_model_dir)
    (copy / "model_index.json").write_text(json.dumps({**index, "num_inference_steps": 30}))
    assert model_hash(copy) != model_hash(tiny_model_dir)
    (copy / "model_index.json").write_text((tiny_model_dir / "model_index.json").read_text())
    assert model_hash(copy) == model_hash(tiny_model_dir)
    weights = copy / "emotion" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_hash(copy) != model_hash(tiny_model_dir)
