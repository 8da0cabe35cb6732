"""Build the synthface manifest assets (reproducible; needs no trained model):

- manifests/synthface_identities.parquet: 100 held-out synthface identities (`identity`, `embedding`),
  never rendered for training (indices from facegen.synthface.params.HELDOUT_START), and
  manifests/synthface_demo_identities.parquet, the first 8 of them (the demo's);
- manifests/synthface_exemplars.parquet: an exemplar bank (24 landmark sets per emotion class, with
  their true emotion, valence / arousal and class posterior), rendered from held-out identities.

    .venv/bin/python scripts/build_synthface_assets.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facegen.analysis.extract import write_exemplar_bank_from_labels
from facegen.labels import NUM_EMOTIONS
from facegen.synthface.dataset import RenderConfig, heldout_config, render_dataset
from facegen.synthface.params import HELDOUT_START, identity_embedding, identity_params

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 24


def main() -> None:
    ids = list(range(HELDOUT_START, HELDOUT_START + 100))
    emb = identity_embedding(np.stack([identity_params(i) for i in ids]))
    table = pa.table({
        "identity": [f"synthface-{i:07d}" for i in ids],
        "embedding": pa.array(list(emb), pa.list_(pa.float32(), emb.shape[1])),
    })
    pq.write_table(table, ROOT / "manifests" / "synthface_identities.parquet")
    pq.write_table(table.slice(0, 8), ROOT / "manifests" / "synthface_demo_identities.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        config: RenderConfig = heldout_config(str(Path(tmp) / "ex"), 40 * PER_CLASS, num_identities=100, seed=2,
                                              images_per_shard=10_000)
        render_dataset(config, progress=False)
        labels = pq.read_table(Path(tmp) / "ex" / "labels.parquet").sort_by("key")
        emotion = labels.column("emotion").to_numpy()
        keep = np.concatenate([np.flatnonzero(emotion == c)[:PER_CLASS] for c in range(NUM_EMOTIONS)])
        if any((emotion == c).sum() < PER_CLASS for c in range(NUM_EMOTIONS)):
            raise SystemExit("not enough renders per class; raise the render count")
        write_exemplar_bank_from_labels(labels.take(np.sort(keep)), ROOT / "manifests" / "synthface_exemplars.parquet")
    print("wrote manifests/synthface_{identities,demo_identities,exemplars}.parquet")


if __name__ == "__main__":
    main()
