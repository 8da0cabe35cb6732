"""Model-area fixtures: one loaded tiny pipeline per session and seeded random conditions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegen.labels import EMOTION_VECTOR_DIM, ID_EMBED_DIM


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir: Path):
    from facegen.model.pipeline import FaceCrafterPipeline

    return FaceCrafterPipeline.from_pretrained(tiny_model_dir)


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
