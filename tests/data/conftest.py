"""One small generated dataset (in-process, tiny model) shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

MANIFEST = """\
version: 1
seed: 11
model: {model}
sampler: {{steps: 2, image_size: 32, batch_size: 4}}
output: {{samples_per_shard: 3, image_format: webp}}
identities: {{random: {{count: 3}}}}
images_per_identity: 4
targets: {{emotion: uniform, controls: id+lmk+emo}}
"""


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """12 webp images of 3 identities in 4 shards of 3."""
    from facegen.runner.balance import BalanceConfig, run_balance

    folder = tmp_path_factory.mktemp("data-ds")
    manifest = folder / "m.yaml"
    manifest.write_text(MANIFEST.format(model=tiny_model_dir), encoding="utf-8")
    out = folder / "ds"
    result = run_balance(BalanceConfig(manifest=manifest, out=str(out), distributor="in-process", progress=False, reports=False))
    assert result.complete
    return out
