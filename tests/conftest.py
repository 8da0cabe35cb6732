"""Shared fixtures: a tiny FaceCrafter model folder (built locally, no hub) and a local Ray."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # Ray must not re-launch workers via uv
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray Train's controller polls its workers this often (Ray's default: every 2 s); a run's end is only
# noticed at the next poll, which adds seconds to every few-step training run the suite makes.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Hermetic preset cache (`model: tiny` builds into $FACEGEN_CACHE): never reuse or touch ~/.cache.
os.environ["FACEGEN_CACHE"] = tempfile.mkdtemp(prefix="facegen-test-cache-")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny model folder in the real on-disk layout (seeded, deterministic)."""
    from facegen.model.presets import init_tiny_model

    out = tmp_path_factory.mktemp("tiny-model") / "model"
    init_tiny_model(out, seed=0)
    return out


@pytest.fixture(scope="session")
def ray_local():
    """One in-process local Ray for the whole session; shut down only what we started."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
