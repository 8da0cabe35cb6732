"""Small manifests on the session's tiny model (2 steps, 32 px) for the runner tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL = """\
version: 1
seed: 7
model: {model}
sampler: {{scheduler: dpmpp, steps: 2, image_size: 32, batch_size: 2}}
output: {{samples_per_shard: 2, image_format: png, store_landmark_image: true}}
identities: {{random: {{count: 2}}}}
images_per_identity: {per_identity}
targets:
  emotion: uniform
  pose: {{yaw: {{uniform: [-20, 20], bins: 2}}}}
  controls: {{id: 0.25, id+lmk: 0.25, id+emo: 0.25, id+lmk+emo: 0.25}}
"""


def write_manifest(folder: Path, model_dir: Path, per_identity: int = 3, name: str = "small.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(SMALL.format(model=model_dir, per_identity=per_identity), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """6 images (2 identities x 3) in 3 shards of 2, every control set, png + landmark images."""
    return write_manifest(tmp_path_factory.mktemp("manifests"), tiny_model_dir)


@pytest.fixture(scope="session")
def manifest_writer(tiny_model_dir: Path):
    """`write(folder, per_identity=3) -> Path`: a small manifest on the tiny model."""
    return lambda folder, per_identity=3: write_manifest(folder, tiny_model_dir, per_identity)
