"""Render synthface datasets in exactly the layout `facegen extract` writes, plus the truth columns.

``DIR/shards/NNNNNN.{tar,parquet}`` + ``_stats.json`` (per sample ``KEY.jpg``, ``KEY.json``,
``KEY.mask.png``), ``DIR/labels.parquet`` (EXTRACT_SCHEMA + ``truth_*`` columns) and
``DIR/inputs.parquet`` (the render plan). `facegen train` reads it unchanged. Resumable like every
shard job: finished shards are kept, the rest re-rendered. Row ``i`` of a plan depends only on
(seed, i), so plans of different lengths agree on their common prefix.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from facegen.errors import FacegenError
from facegen.io import write_parquet_atomic
from facegen.io.samples import Sample, SampleFailure
from facegen.labels import EMOTION_NAMES, EXTRACT_SCHEMA, NUM_EMOTIONS
from facegen.synthface.params import (
    EXPRESSION_DIM,
    HELDOUT_START,
    IDENTITY_DIM,
    POSE_RANGES,
    FaceSpec,
    Nuisance,
    emotion_posterior,
    identity_embedding,
    identity_params,
    sample_expression,
    sample_nuisance,
    valence_arousal,
)
from facegen.synthface.render import render_face

FORMAT_VERSION = 1

#: The render plan: one row per image with every parameter of its FaceSpec.
RENDER_PLAN_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("identity_index", pa.int64(), nullable=False),
        pa.field("emotion", pa.int8(), nullable=False),
        pa.field("intensity", pa.float32(), nullable=False),
        pa.field("expression", pa.list_(pa.float32(), EXPRESSION_DIM), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
        pa.field("yaw", pa.float32(), nullable=False),
        pa.field("pitch", pa.float32(), nullable=False),
        pa.field("roll", pa.float32(), nullable=False),
        pa.field("nuisance", pa.list_(pa.float32(), 8), nullable=False),
    ]
)

#: labels.parquet of a synthface dataset: what extract writes, plus the truth it was rendered from.
SYNTHFACE_SCHEMA = pa.schema(
    list(EXTRACT_SCHEMA)
    + [
        pa.field("truth_identity", pa.list_(pa.float32(), IDENTITY_DIM), nullable=False),
        pa.field("truth_expression", pa.list_(pa.float32(), EXPRESSION_DIM), nullable=False),
        pa.field("truth_intensity", pa.float32(), nullable=False),
        pa.field("truth_nuisance", pa.list_(pa.float32(), 8), nullable=False),
    ]
)


@dataclass(frozen=True)
class RenderConfig:
    """A synthface dataset: how many images, which identities, which seed."""

    out: str
    num_images: int
    num_identities: int = 1000
    identity_start: int = 0
    seed: int = 0
    size: int = 64
    images_per_shard: int = 1000
    jpeg_quality: int = 95

    def validate(self) -> RenderConfig:
        if self.num_images < 1:
            raise FacegenError("must be >= 1", where="--n")
        if self.num_identities < 1:
            raise FacegenError("must be >= 1", where="--identities")
        if self.size < 32 or self.size % 8:
            raise FacegenError("must be a multiple of 8, at least 32", where="--size")
        if not 1 <= self.jpeg_quality <= 100:
            raise FacegenError("must be in 1..100", where="--quality")
        return self


def heldout_config(out: str, num_images: int, num_identities: int = 100, seed: int = 1, **kw) -> RenderConfig:
    """Held-out identities (never rendered for training) for evaluation."""
    return RenderConfig(out, num_images, num_identities, identity_start=HELDOUT_START, seed=seed, **kw)


def spec_row(index: int, config: RenderConfig) -> dict:
    """Row `index` of the render plan (deterministic in (seed, index))."""
    rng = np.random.default_rng([int(config.seed), 11, int(index)])
    identity = config.identity_start + int(rng.integers(config.num_identities))
    emotion = int(rng.integers(NUM_EMOTIONS))
    expression, intensity = sample_expression(emotion, rng)
    valence, arousal = valence_arousal(emotion, intensity, rng)
    yaw, pitch, roll = (float(rng.uniform(-POSE_RANGES[k], POSE_RANGES[k])) for k in ("yaw", "pitch", "roll"))
    n = sample_nuisance(rng)
    nuisance = [n.light_azimuth, n.light_elevation, *n.background, n.scale, *n.shift]
    return {
        "key": f"{index:09d}",
        "identity_index": identity,
        "emotion": emotion,
        "intensity": intensity,
        "expression": expression.astype(np.float32),
        "valence": valence,
        "arousal": arousal,
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "nuisance": np.asarray(nuisance, np.float32),
    }


def render_plan(config: RenderConfig) -> pa.Table:
    rows = [spec_row(i, config) for i in range(config.num_images)]
    for i, row in enumerate(rows):
        row["shard"] = i // config.images_per_shard
    return pa.Table.from_pylist(rows, schema=RENDER_PLAN_SCHEMA)


def spec_from_row(row: dict, domain_seed: int = 0) -> FaceSpec:
    n = [float(v) for v in row["nuisance"]]
    return FaceSpec(
        identity=identity_params(int(row["identity_index"]), domain_seed),
        expression=np.asarray(row["expression"], np.float64),
        yaw=float(row["yaw"]),
        pitch=float(row["pitch"]),
        roll=float(row["roll"]),
        nuisance=Nuisance(n[0], n[1], (n[2], n[3], n[4]), n[5], (n[6], n[7])),
    )


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


class SynthfaceRenderWorker:
    """Runner worker: plan rows -> extract-format samples (image, labels, mask) with truth columns."""

    def __init__(self, size: int = 64, jpeg_quality: int = 95) -> None:
        self.size, self.jpeg_quality = size, jpeg_quality

    def process(self, unit) -> Iterator[Sample | SampleFailure]:
        for row in unit.rows.to_pylist():
            spec = spec_from_row(row)
            face = render_face(spec, self.size)
            probs = emotion_posterior(spec.expression)
            embedding = identity_embedding(spec.identity)
            label = {
                "key": row["key"],
                "shard": unit.shard,
                "source": f"synthface:{row['identity_index']}",
                "identity": f"synthface-{row['identity_index']:07d}",
                "identity_index": int(row["identity_index"]),
                "embedding": embedding,
                "landmarks": face.landmarks.reshape(-1),
                "yaw": row["yaw"],
                "pitch": row["pitch"],
                "roll": row["roll"],
                "emotion": int(row["emotion"]),
                "valence": row["valence"],
                "arousal": row["arousal"],
                "emotion_probs": probs,
                "truth_identity": spec.identity.astype(np.float32),
                "truth_expression": np.asarray(row["expression"], np.float32),
                "truth_intensity": row["intensity"],
                "truth_nuisance": np.asarray(row["nuisance"], np.float32),
            }
            scalars = {
                "identity": label["identity"],
                "identity_index": label["identity_index"],
                "yaw": row["yaw"],
                "pitch": row["pitch"],
                "roll": row["roll"],
                "emotion": label["emotion"],
                "emotion_name": EMOTION_NAMES[label["emotion"]],
                "valence": row["valence"],
                "arousal": row["arousal"],
                "emotion_probs": [float(p) for p in probs],
                "expression": [float(v) for v in row["expression"]],
            }
            buf = io.BytesIO()
            Image.fromarray(face.image).save(buf, format="JPEG", quality=self.jpeg_quality)
            files = {
                "jpg": buf.getvalue(),
                "json": json.dumps(scalars, sort_keys=True).encode(),
                "mask.png": _png(face.mask.astype(np.uint8) * 255),
            }
            yield Sample(row["key"], files, label)


def fingerprint(config: RenderConfig) -> str:
    payload = {
        "command": "synthface-render",
        "format_version": FORMAT_VERSION,
        **{k: getattr(config, k) for k in ("num_images", "num_identities", "identity_start", "seed", "size",
                                            "images_per_shard", "jpeg_quality")},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def render_dataset(config: RenderConfig, distributor=None, *, progress: bool = True) -> Path:
    """Render `config` into `config.out` (resumable); returns the output folder."""
    from facegen.runner import InProcessDistributor, ShardTask, run_shards, units_from_table

    config = config.validate()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise FacegenError("exists and is not a folder; choose another --out", where=str(out))
    plan = render_plan(config)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(out / "inputs.parquet", plan)
    task = ShardTask(
        functools.partial(SynthfaceRenderWorker, config.size, config.jpeg_quality),
        str(out),
        fingerprint(config),
        label_schema=SYNTHFACE_SCHEMA,
        extra_stats={"command": "synthface-render", "format_version": FORMAT_VERSION},
    )
    summary = run_shards(units_from_table(plan), task, distributor or InProcessDistributor(), progress=progress,
                         description="rendering")
    if summary.failed:
        shard, error = next(iter(summary.failed.items()))
        raise FacegenError(f"shard {shard} failed: {error}; re-run the same command to retry", where=str(out))
    tables = [pq.read_table(out / "shards" / f"{s:06d}.parquet", schema=SYNTHFACE_SCHEMA) for s in sorted(summary.done)]
    write_parquet_atomic(out / "labels.parquet", pa.concat_tables(tables))
    return out


