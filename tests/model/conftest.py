"""Model-area fixtures: one loaded tiny pipeline per session and seeded random conditions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegen.labels import EMOTION_VECTOR_DIM, ID_EMBED_DIM


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir: Path):
    from facegen.model.pipeline import FaceCrafterPipeline

    pipe = FaceCrafterPipeline.from_pretrained(tiny_model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_layout1_folder(new_dir: Path, out: Path) -> Path:
    """The same tiny model in the layout before the diffusers pipeline (facegen.json format 1,
    encoder/, the trained PNDM scheduler config + a sampler name)."""
    import json
    import shutil

    from facegen.model.presets import SD15_SCHEDULER_CONFIG

    out.mkdir(parents=True)
    for part in ("unet", "vae", "tokenizer", "landmark", "emotion"):
        shutil.copytree(new_dir / part, out / part)
    shutil.copytree(new_dir / "text_encoder", out / "encoder")
    (out / "scheduler").mkdir()
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER_CONFIG, indent=2))
    info = {
        "format": "facegen-model", "format_version": 1, "name": "tiny",
        "parts": {p: p for p in ("unet", "encoder", "vae", "tokenizer", "scheduler", "landmark", "emotion")},
        "resolution": 64, "landmark_image_size": 64, "id_prompt": "photo of a id person", "id_token": "id",
        "default_scheduler": "dpmpp", "default_steps": 25, "guidance": {"id": 2.5, "lmk": 2.0, "emo": 2.0},
        "source": {"preset": "tiny", "seed": 0},
    }
    (out / "facegen.json").write_text(json.dumps(info, indent=2))
    return out


@pytest.fixture(scope="session")
def legacy_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a layout-1 folder (what `facegen model init` wrote before model_index.json)."""
    return write_layout1_folder(tiny_model_dir, tmp_path_factory.mktemp("legacy") / "model")


def random_conditions(batch: int, landmark_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """L2-normalised identities, landmark images in [0, 1] and emotion vectors (seeded)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.nn.functional.normalize(torch.randn(batch, ID_EMBED_DIM, generator=g), dim=-1)
    landmarks = torch.rand(batch, 3, landmark_size, landmark_size, generator=g)
    emotions = torch.rand(batch, EMOTION_VECTOR_DIM, generator=g)
    return {"id_embeds": ids, "landmark_images": landmarks, "emotions": emotions}


@pytest.fixture
def conditions():
    return random_conditions


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine two threads mostly spin."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
