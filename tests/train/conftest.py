"""Tiny extracted-format training data (contracts.md "Extracted training data"), built locally."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

NUM_IDENTITIES = 3
IMAGES_PER_IDENTITY = 6
IMAGE_SIZE = 64


def _blurred_face_image(rng: np.random.Generator, base: np.ndarray, size: int) -> np.ndarray:
    """A smooth random RGB image around an identity colour (box-blurred noise)."""
    noise = rng.normal(0, 40, (size // 8, size // 8, 3))
    up = np.kron(noise, np.ones((8, 8, 1)))
    k = 5
    pad = np.pad(up, ((k, k), (k, k), (0, 0)), mode="edge")
    cs = pad.cumsum(0).cumsum(1)
    blur = (cs[2 * k :, 2 * k :] - cs[: -2 * k, 2 * k :] - cs[2 * k :, : -2 * k] + cs[: -2 * k, : -2 * k]) / (2 * k) ** 2
    return np.clip(base + blur[:size, :size], 0, 255).astype(np.uint8)


def make_extracted_data(out: Path, seed: int = 0, image_size: int = IMAGE_SIZE) -> Path:
    """Write `out/shards/NNNNNN.{tar,parquet}` + `out/labels.parquet` exactly per EXTRACT_SCHEMA."""
    import webdataset as wds
    from PIL import Image

    from facegen.conditions.pose import rotate_landmarks
    from facegen.conditions.template import neutral_template
    from facegen.labels import EMOTION_NAMES, EXTRACT_SCHEMA, ID_EMBED_DIM

    rng = np.random.default_rng(seed)
    template = neutral_template().astype(np.float64)
    mouth = template[:, 1] > np.quantile(template[:, 1], 0.8)  # lower face points move with expression
    rows = []
    (out / "shards").mkdir(parents=True, exist_ok=True)
    poses = [(-25, 3, 0), (0, 0, 0), (20, -5, 2)]  # two images per pose: EMO pairs exist, LMK pairs too
    with wds.ShardWriter(str(out / "shards" / "%06d.tar"), maxcount=10, verbose=0) as sink:
        for ident in range(NUM_IDENTITIES):
            emb_base = rng.normal(size=ID_EMBED_DIM)
            colour = rng.uniform(60, 200, 3)
            for k in range(IMAGES_PER_IDENTITY):
                n = len(rows)
                shard = n // 10
                key = f"{shard:06d}_{n:06d}"
                yaw, pitch, roll = (float(a + rng.uniform(-2, 2)) for a in poses[k // 2])
                emotion = (k + ident) % 3  # neutral / happy / sad
                expr = template.copy()
                expr[mouth, 1] += 0.03 * emotion  # open the mouth for non-neutral rows
                lm = rotate_landmarks(expr, yaw, pitch, roll) + rng.normal(0, 0.002, expr.shape)
                probs = np.full(len(EMOTION_NAMES), 0.02)
                probs[emotion] = 1 - 0.02 * (len(EMOTION_NAMES) - 1)
                emb = emb_base + rng.normal(0, 0.1, ID_EMBED_DIM)
                emb /= np.linalg.norm(emb)
                img = _blurred_face_image(rng, colour, image_size)
                label = {
                    "identity": f"person{ident}", "identity_index": ident, "yaw": yaw, "pitch": pitch,
                    "roll": roll, "emotion": emotion, "valence": [0.0, 0.7, -0.6][emotion],
                    "arousal": [0.0, 0.4, -0.2][emotion], "emotion_probs": probs.tolist(),
                }
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=95)
                sink.write({"__key__": key, "jpg": buf.getvalue(), "json": json.dumps(label).encode()})
                rows.append({
                    "key": key, "shard": shard, "source": f"synthetic/{key}.png", "identity": f"person{ident}",
                    "identity_index": ident, "embedding": emb.astype(np.float32).tolist(),
                    "landmarks": lm.astype(np.float32).ravel().tolist(), "yaw": float(yaw), "pitch": float(pitch),
                    "roll": float(roll), "emotion": emotion, "valence": label["valence"],
                    "arousal": label["arousal"], "emotion_probs": probs.astype(np.float32).tolist(),
                })
    table = pa.Table.from_pylist(rows, schema=EXTRACT_SCHEMA)
    for shard in sorted({r["shard"] for r in rows}):
        part = table.filter(pa.compute.equal(table["shard"], shard))
        pq.write_table(part, out / "shards" / f"{shard:06d}.parquet")
    pq.write_table(table, out / "labels.parquet")
    return out


@pytest.fixture(scope="session")
def extracted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_extracted_data(tmp_path_factory.mktemp("extracted") / "data")
