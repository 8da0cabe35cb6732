"""`facegen extract`: real face photos -> training shards (EXTRACT_SCHEMA), rejects and an exemplar bank.

Runs on the shared shard machinery (`facegen.runner`): the input listing becomes work units, each
actor builds a :class:`FaceAnalyzer` once and turns its unit's images into samples; undecodable,
truncated, non-image and face-less inputs become `SampleFailure`s, collected into `rejects.parquet`.

Output ``DIR/``: ``shards/NNNNNN.{tar,parquet}`` + ``_stats.json`` (per contracts.md: ``KEY.jpg`` crop,
``KEY.json`` scalar labels, ``KEY.mask.png`` face mask, optional ``KEY.lmk.png`` rendered landmarks),
``labels.parquet`` (all rows, EXTRACT_SCHEMA), ``rejects.parquet`` (key, source, reason, detail),
``inputs.parquet`` (the listing), and the exemplar bank when asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from facegen.analysis.analyze import FaceAnalyzer, FaceRecord
from facegen.analysis.images import ImageRejected, decode_image
from facegen.analysis.inputs import IDENTITY_FROM, SourceReader, list_inputs
from facegen.analysis.models import resolve_models_dir
from facegen.analysis.registry import backend_class
from facegen.errors import FacegenError
from facegen.io.fs import Location, normalize_url
from facegen.labels import EXTRACT_SCHEMA, ID_EMBED_DIM
from facegen.runner import (
    Distributor,
    InProcessDistributor,
    Sample,
    SampleFailure,
    ShardTask,
    WorkUnit,
    assign_shards,
    run_shards,
    units_from_table,
)
from facegen.runner.finalize import collect_labels

FORMAT_VERSION = 1
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # empty, not-an-image, truncated, unreadable, no-face, ...
        pa.field("detail", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ExtractConfig:
    """Validated once by :meth:`validate` (paths made absolute so Ray actors can use them)."""

    input: str
    out: str  # a local folder or an fsspec URL (``s3://bucket/data``), like `balance --out`
    identity_from: str = "folders"
    crop_size: int = 256
    landmark_backend: str = "mediapipe"
    identity_backend: str = "arcface"
    emotion_backend: str = "none"
    models_dir: str | None = None
    masks: bool = True
    landmark_images: bool = False
    images_per_shard: int = 500
    exemplar_bank: str | None = None
    jpeg_quality: int = 95

    def validate(self) -> "ExtractConfig":
        """Check options and that every chosen backend's weights exist (before any worker starts)."""
        if self.identity_from not in IDENTITY_FROM:
            raise FacegenError(f"--identity-from must be one of {', '.join(IDENTITY_FROM)}")
        if not 64 <= self.crop_size <= 2048:
            raise FacegenError(f"--crop-size must be in 64..2048, got {self.crop_size}")
        if self.images_per_shard < 1:
            raise FacegenError("--images-per-shard must be >= 1")
        models = resolve_models_dir(self.models_dir).resolve()
        for kind, name in (("landmarks", self.landmark_backend), ("identity", self.identity_backend), ("emotion", self.emotion_backend)):
            cls = backend_class(name, kind)
            for f in cls.model_files():
                f.require(models)
        ident = backend_class(self.identity_backend, "identity")
        if ident.dim != ID_EMBED_DIM:  # type: ignore[attr-defined]
            raise FacegenError(
                f"--identity-backend {self.identity_backend} gives {ident.dim}-d embeddings; training shards need "  # type: ignore[attr-defined]
                f"{ID_EMBED_DIM}-d ArcFace ones: use arcface (or none for landmark/emotion-only runs)"
            )
        if self.exemplar_bank and self.emotion_backend == "none":
            raise FacegenError("--exemplar-bank needs measured emotions: choose --emotion-backend emonet or hsemotion")
        return ExtractConfig(
            **{
                **asdict(self),
                "input": str(Path(self.input).expanduser().resolve()),
                "out": normalize_url(self.out),
                "models_dir": str(models),
                "exemplar_bank": str(Path(self.exemplar_bank).expanduser().resolve()) if self.exemplar_bank else None,
            }
        )


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _finite_or_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class ExtractWorker:
    """Worker protocol of `facegen.runner`: one FaceAnalyzer per actor; rows -> samples or rejects."""

    def __init__(self, config: ExtractConfig) -> None:
        self.config = config
        self.analyzer = FaceAnalyzer.from_names(
            landmarks=config.landmark_backend,
            identity=config.identity_backend,
            emotion=config.emotion_backend,
            models_dir=config.models_dir,
            crop_size=config.crop_size,
        )
        self.reader = SourceReader()

    def process(self, unit: WorkUnit) -> Iterator[Sample | SampleFailure]:
        for row in unit.rows.to_pylist():
            try:
                try:
                    data = self.reader.read(row["source"])
                except OSError as exc:
                    raise ImageRejected("unreadable", str(exc)) from None
                record = self.analyzer.analyze(decode_image(data))
            except ImageRejected as rej:
                yield SampleFailure(row["key"], str(rej))
                continue
            yield self.sample(row, unit.shard, record)

    def sample(self, row: dict[str, Any], shard: int, rec: FaceRecord) -> Sample:
        emo = rec.emotion
        label = {
            "key": row["key"],
            "shard": shard,
            "source": row["source"],
            "identity": row["identity"],
            "identity_index": row["identity_index"],
            "embedding": rec.embedding.astype(np.float32),
            "landmarks": rec.landmarks.reshape(-1).astype(np.float32),
            "yaw": rec.pose.yaw,
            "pitch": rec.pose.pitch,
            "roll": rec.pose.roll,
            "emotion": emo.emotion,
            "valence": emo.valence,
            "arousal": emo.arousal,
            "emotion_probs": emo.probs.astype(np.float32),
        }
        scalars = {
            "identity": row["identity"],
            "identity_index": row["identity_index"],
            "yaw": rec.pose.yaw,
            "pitch": rec.pose.pitch,
            "roll": rec.pose.roll,
            "emotion": emo.emotion,
            "valence": _finite_or_none(emo.valence),
            "arousal": _finite_or_none(emo.arousal),
            "emotion_probs": [float(p) for p in emo.probs],
        }
        buf = io.BytesIO()
        Image.fromarray(rec.crop).save(buf, format="JPEG", quality=self.config.jpeg_quality)
        files = {"jpg": buf.getvalue(), "json": json.dumps(scalars, sort_keys=True).encode()}
        if self.config.masks:
            files["mask.png"] = _png(rec.mask.astype(np.uint8) * 255)
        if self.config.landmark_images:
            from facegen.conditions.render import render_landmark_image

            files["lmk.png"] = _png(render_landmark_image(rec.landmarks, self.config.crop_size))
        return Sample(row["key"], files, label)


@dataclass
class ExtractSummary:
    out: str  # the output folder (path or URL)
    inputs: int
    extracted: int
    rejected: int
    reasons: dict[str, int] = field(default_factory=dict)
    failed_shards: dict[int, str] = field(default_factory=dict)
    exemplar_bank: Path | None = None
    seconds: float = 0.0


def fingerprint(config: ExtractConfig, listing: pa.Table) -> str:
    """Identity of a run: options that change outputs, the input listing, and the weight files used."""
    h = hashlib.sha256(f"facegen-extract/{FORMAT_VERSION}".encode())
    relevant = {k: v for k, v in asdict(config).items() if k not in ("out", "exemplar_bank", "models_dir")}
    h.update(json.dumps(relevant, sort_keys=True).encode())
    for col in ("key", "source", "identity"):
        h.update("\n".join(listing.column(col).to_pylist()).encode())
    # every backend's weight files by sha256 (the landmark one too: other landmark weights, other labels)
    from facegen.analysis.measure import estimator_weights

    names = {"landmarks": config.landmark_backend, "identity": config.identity_backend, "emotion": config.emotion_backend}
    h.update(json.dumps(estimator_weights(names, config.models_dir), sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_extract(config: ExtractConfig, distributor: Distributor | None = None, *, progress: bool = True) -> ExtractSummary:
    """Extract every input image of `config` into `config.out` (resumable; see module docstring)."""
    import functools
    import time

    started = time.perf_counter()
    config = config.validate()
    root = Location(config.out)
    listing = list_inputs(config.input, config.identity_from)
    listing = assign_shards(listing, config.images_per_shard)
    root.makedirs()
    root.write_parquet_atomic("inputs.parquet", listing)
    task = ShardTask(
        functools.partial(ExtractWorker, config),
        root.url,
        fingerprint(config, listing),
        label_schema=EXTRACT_SCHEMA,
        extra_stats={"command": "extract", "format_version": FORMAT_VERSION},
    )
    summary = run_shards(units_from_table(listing), task, distributor or InProcessDistributor(), progress=progress, description="extracting")

    sources = dict(zip(listing.column("key").to_pylist(), listing.column("source").to_pylist()))
    rejects: list[dict[str, str]] = []
    for shard in sorted(summary.done):
        for item in summary.done[shard].failed:
            reason, detail = ImageRejected.parse(item["error"])
            rejects.append({"key": item["key"], "source": sources.get(item["key"], ""), "reason": reason, "detail": detail})
    for shard, error in sorted(summary.failed.items()):
        for row in listing.filter(pc.equal(listing.column("shard"), shard)).to_pylist():
            rejects.append({"key": row["key"], "source": row["source"], "reason": "shard-failed", "detail": error})
    root.write_parquet_atomic("rejects.parquet", pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA))

    labels = collect_labels(root, list(summary.done), EXTRACT_SCHEMA)
    root.write_parquet_atomic("labels.parquet", labels)

    bank_path = None
    if config.exemplar_bank and labels.num_rows:
        bank_path = write_exemplar_bank_from_labels(labels, Path(config.exemplar_bank))
    reasons: dict[str, int] = {}
    for r in rejects:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return ExtractSummary(
        out=root.url,
        inputs=listing.num_rows,
        extracted=labels.num_rows,
        rejected=len(rejects),
        reasons=reasons,
        failed_shards=dict(summary.failed),
        exemplar_bank=bank_path,
        seconds=time.perf_counter() - started,
    )


def write_exemplar_bank_from_labels(labels: pa.Table, path: Path) -> Path:
    """EXEMPLAR_SCHEMA bank from extracted rows: landmarks frontalised and canonically framed (the
    planner poses them itself), emotion measured on the same face."""
    from facegen.conditions.exemplars import write_exemplar_bank
    from facegen.conditions.template import frontalize
    from facegen.labels import NUM_EMOTIONS, NUM_LANDMARKS

    def fixed(col: str, width: int) -> np.ndarray:
        arr = labels.column(col).combine_chunks()
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), width)

    landmarks = fixed("landmarks", NUM_LANDMARKS * 3).reshape(-1, NUM_LANDMARKS, 3)
    return write_exemplar_bank(
        path,
        landmarks=frontalize(landmarks).astype(np.float32),
        emotion=labels.column("emotion").to_numpy(),
        valence=labels.column("valence").to_numpy(),
        arousal=labels.column("arousal").to_numpy(),
        emotion_probs=fixed("emotion_probs", NUM_EMOTIONS),
    )
