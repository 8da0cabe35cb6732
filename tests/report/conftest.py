"""One small dataset made by a real `facegen balance` run (tiny model, in-process, reports on) shared by
the dataset-card tests."""

from __future__ import annotations

from pathlib import Path

import pytest

MANIFEST = """\
version: 1
seed: 5
model: {model}
sampler: {{steps: 2, image_size: 32, batch_size: 4}}
output: {{samples_per_shard: 5, image_format: jpg, store_landmark_image: true}}
identities: {{random: {{count: 4}}}}
images_per_identity: 4
targets:
  emotion: uniform
  pose: {{yaw: {{uniform: [-30, 30], bins: 3}}}}
  controls: id+lmk+emo
"""


@pytest.fixture(scope="session")
def card_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """16 jpg images (+ landmark images) of 4 identities in 4 shards, with README.md and report.html."""
    from facegen.runner.balance import BalanceConfig, run_balance

    folder = tmp_path_factory.mktemp("card-ds")
    manifest = folder / "m.yaml"
    manifest.write_text(MANIFEST.format(model=tiny_model_dir), encoding="utf-8")
    out = folder / "ds"
    result = run_balance(BalanceConfig(manifest=manifest, out=str(out), distributor="in-process", progress=False))
    assert result.complete
    return out
