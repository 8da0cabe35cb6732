"""Planning: a manifest becomes one PLAN_SCHEMA row per image, written streaming to Parquet.

Layout (all deterministic from `manifest.seed`):
  1. Global, compact bin codes — identity (int32), emotion (int8), control set (int8) and one pose
     stratum per axis (int16) — with exact largest-remainder counts, each shuffled in place by its
     own seeded stream so every shard mixes all bins (~11 bytes per row in memory).
  2. Rows are then produced in fixed blocks of `BLOCK_ROWS`; block b draws its continuous values
     (angles inside strata, valence/arousal, exemplar picks) from SeedSequence(seed, (stream, b)),
     so the values never depend on how the writer slices its output.
  3. Per-sample noise seeds are splitmix64(base + index) (63 bits): independent of everything else.
Row groups are cut at shard boundaries so a shard's rows can be read on their own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facegen.conditions.emotions import peaked_probs, prior_table, sample_valence_arousal
from facegen.conditions.identities import resolve_identities
from facegen.errors import FacegenError
from facegen.labels import CONTROL_SETS, EMOTION_NAMES, NUM_EMOTIONS, PLAN_SCHEMA
from facegen.manifest.distributions import AxisBins, apportion, axis_bins, shuffled_codes
from facegen.manifest.schema import Manifest
from facegen.manifest.topup import TopUp, plan_topup

BLOCK_ROWS = 1 << 16
PLAN_FILE = "plan.parquet"
IDENTITIES_FILE = "identities.npy"
SUMMARY_FILE = "plan_summary.json"
POSE_AXES = ("yaw", "pitch", "roll")
# Low-cardinality columns only: dictionary-encoding unique keys/seeds/floats costs time, saves nothing.
_DICTIONARY_COLUMNS = ["shard", "identity", "emotion", "emotion_name", "controls", "exemplar"]

# SeedSequence spawn keys: one independent stream per purpose (1 is the identity stream).
_STREAM_IDENTITY_ORDER = 10
_STREAM_EMOTION_ORDER = 11
_STREAM_CONTROL_ORDER = 12
_STREAM_POSE_ORDER = (13, 14, 15)
_STREAM_BLOCK = 20
_STREAM_SAMPLE_SEED = 21


@dataclass(frozen=True)
class PlanInfo:
    """What `write_plan` wrote (paths absolute) and the per-bin counts it planned."""

    plan_path: Path
    identities_path: Path
    summary_path: Path
    num_rows: int
    num_shards: int
    num_identities: int
    samples_per_shard: int
    summary: dict = field(repr=False, default_factory=dict)


@dataclass
class _Layout:
    num_rows: int
    identity: np.ndarray
    emotion: np.ndarray
    controls: np.ndarray
    pose_codes: list[np.ndarray]
    pose_bins: list[AxisBins]
    emotion_counts: np.ndarray
    topup: TopUp | None


@dataclass(frozen=True)
class _EmotionSource:
    """Per-class lookups for emotion values: the prior table, or the exemplar bank."""

    probs_by_class: np.ndarray  # (8, 8) float32 (prior mode)
    va_table: np.ndarray  # (8, 4)
    bank_rows_by_class: list[np.ndarray] | None = None  # bank mode: row indices per class
    bank_valence: np.ndarray | None = None
    bank_arousal: np.ndarray | None = None
    bank_probs: np.ndarray | None = None


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _rows_for(manifest: Manifest, num_identities: int) -> int:
    if manifest.balance is not None:
        return manifest.balance.total
    assert manifest.images_per_identity is not None
    return num_identities * manifest.images_per_identity


def _layout(manifest: Manifest, num_identities: int) -> _Layout:
    n = _rows_for(manifest, num_identities)
    seed = manifest.seed
    topup = plan_topup(manifest) if manifest.balance is not None else None
    emotion_counts = topup.synthetic if topup is not None else apportion(manifest.targets.emotion.as_list(), n)
    id_counts = apportion(np.ones(num_identities), n)
    identity = shuffled_codes(id_counts, _rng(seed, _STREAM_IDENTITY_ORDER), np.int32)
    emotion = shuffled_codes(emotion_counts, _rng(seed, _STREAM_EMOTION_ORDER), np.int8)
    controls = shuffled_codes(apportion(manifest.targets.controls_list(), n), _rng(seed, _STREAM_CONTROL_ORDER), np.int8)
    pose_bins, pose_codes = [], []
    for axis, stream in zip(POSE_AXES, _STREAM_POSE_ORDER):
        bins = axis_bins(getattr(manifest.targets.pose, axis))
        pose_bins.append(bins)
        pose_codes.append(shuffled_codes(apportion(bins.weights, n), _rng(seed, stream), np.int16))
    return _Layout(n, identity, emotion, controls, pose_codes, pose_bins, emotion_counts, topup)


def _emotion_source(manifest: Manifest, emotion_counts: np.ndarray) -> _EmotionSource:
    overrides = {name: v for name, v in manifest.targets.valence_arousal.model_dump().items() if v is not None}
    table = prior_table(overrides)
    probs = peaked_probs(table=table)
    bank_path = manifest.targets.expression.exemplars
    if bank_path is None:
        return _EmotionSource(probs, table)
    valence, arousal, bank_probs, bank_emotion = read_bank_emotions(manifest)
    rows_by_class = [np.flatnonzero(bank_emotion == k) for k in range(NUM_EMOTIONS)]
    for k, rows in enumerate(rows_by_class):
        if emotion_counts[k] > 0 and len(rows) == 0:
            raise manifest.error(
                ("targets", "expression", "exemplars"),
                f"the exemplar bank has no {EMOTION_NAMES[k]!r} faces but the plan needs {int(emotion_counts[k])}; "
                f"add such exemplars, set targets.emotion.{EMOTION_NAMES[k]} to 0, or use `expression: neutral`",
            )
    return _EmotionSource(probs, table, rows_by_class, valence, arousal, bank_probs)


def read_bank_emotions(manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """valence, arousal (float32), probs (N, 8) float32 and class (int8) per row of the loaded bank.

    Rows are in `load_exemplar_bank` order (ascending exemplar id): PLAN_SCHEMA `exemplar` indexes it.
    """
    from facegen.conditions.exemplars import load_exemplar_bank

    path = manifest.targets.expression.exemplars
    assert path is not None
    try:
        bank = load_exemplar_bank(path)
    except FacegenError as exc:
        raise manifest.error(("targets", "expression", "exemplars"), f"{exc}") from None
    return bank.valence, bank.arousal, bank.emotion_probs, bank.emotion


def sample_seeds(seed: int, index: np.ndarray) -> np.ndarray:
    """Per-sample noise seeds: splitmix64(base(seed) + index) masked to 63 bits (int64 >= 0)."""
    base = np.random.SeedSequence(seed, spawn_key=(_STREAM_SAMPLE_SEED,)).generate_state(1, np.uint64)[0]
    z = np.asarray(index, dtype=np.uint64) + base
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z & np.uint64(0x7FFFFFFFFFFFFFFF)).astype(np.int64)


def _block_batch(manifest: Manifest, layout: _Layout, emo: _EmotionSource, block: int, key_width: int) -> pa.RecordBatch:
    start = block * BLOCK_ROWS
    stop = min(layout.num_rows, start + BLOCK_ROWS)
    rng = _rng(manifest.seed, _STREAM_BLOCK, block)
    index = np.arange(start, stop, dtype=np.int64)
    emotion = layout.emotion[start:stop]
    angles = [bins.sample(codes[start:stop].astype(np.int64), rng) for bins, codes in zip(layout.pose_bins, layout.pose_codes)]
    if emo.bank_rows_by_class is None:
        valence, arousal = sample_valence_arousal(emotion, rng, emo.va_table)
        probs = emo.probs_by_class[emotion.astype(np.int64)]
        exemplar = np.full(len(index), -1, dtype=np.int32)
    else:
        exemplar = np.empty(len(index), dtype=np.int32)
        for k in range(NUM_EMOTIONS):
            where = np.flatnonzero(emotion == k)
            if len(where):
                rows = emo.bank_rows_by_class[k]
                exemplar[where] = rows[rng.integers(0, len(rows), size=len(where))]
        valence, arousal, probs = emo.bank_valence[exemplar], emo.bank_arousal[exemplar], emo.bank_probs[exemplar]
    keys = pc.utf8_lpad(pc.cast(pa.array(index), pa.string()), key_width, "0")
    columns = [
        keys,
        pa.array(index),
        pa.array((index // manifest.output.samples_per_shard).astype(np.int32)),
        pa.array(layout.identity[start:stop]),
        pa.array(sample_seeds(manifest.seed, index)),
        pa.array(emotion),
        pc.take(pa.array(EMOTION_NAMES, pa.string()), pa.array(emotion)),
        pa.array(valence.astype(np.float32)),
        pa.array(arousal.astype(np.float32)),
        pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(probs, dtype=np.float32).reshape(-1)), NUM_EMOTIONS),
        pa.array(angles[0]),
        pa.array(angles[1]),
        pa.array(angles[2]),
        pa.array(exemplar),
        pc.take(pa.array(CONTROL_SETS, pa.string()), pa.array(layout.controls[start:stop])),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=PLAN_SCHEMA)


def _iter_batches(manifest: Manifest, layout: _Layout) -> Iterator[pa.RecordBatch]:
    emo = _emotion_source(manifest, layout.emotion_counts)  # validates the bank before any row
    key_width = max(9, len(str(max(layout.num_rows - 1, 0))))
    for block in range((layout.num_rows + BLOCK_ROWS - 1) // BLOCK_ROWS):
        yield _block_batch(manifest, layout, emo, block, key_width)


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def plan_samples(manifest: Manifest) -> pa.Table:
    """The whole plan as one in-memory table (for small plans; use `write_plan` for big ones)."""
    embeds, _ = resolve_identities(manifest)
    layout = _layout(manifest, len(embeds))
    return pa.Table.from_batches(list(_iter_batches(manifest, layout)), schema=PLAN_SCHEMA)


def write_plan(manifest: Manifest, out_dir: str | Path) -> PlanInfo:
    """Write `plan.parquet`, `identities.npy` and `plan_summary.json` into `out_dir` (atomically)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacegenError(f"cannot create the output folder ({exc}); choose a writable --out", where=str(out)) from None
    embeds, names = resolve_identities(manifest)
    layout = _layout(manifest, len(embeds))
    spp = manifest.output.samples_per_shard
    plan_path, ids_path, summary_path = out / PLAN_FILE, out / IDENTITIES_FILE, out / SUMMARY_FILE
    tmp_plan = out / f".{PLAN_FILE}.tmp"
    batches = _iter_batches(manifest, layout)
    try:
        first_batch = next(batches)  # bank/user errors surface here, before any file is opened
        with pq.ParquetWriter(tmp_plan, PLAN_SCHEMA, compression="zstd", compression_level=1, use_dictionary=_DICTIONARY_COLUMNS) as writer:
            for batch in _chain(first_batch, batches):
                start = batch.column(1)[0].as_py()
                offset = 0
                while offset < batch.num_rows:  # cut row groups at shard boundaries
                    shard_end = ((start + offset) // spp + 1) * spp
                    length = min(batch.num_rows - offset, shard_end - start - offset)
                    writer.write_batch(batch.slice(offset, length))
                    offset += length
    except BaseException:
        tmp_plan.unlink(missing_ok=True)
        raise
    summary = plan_summary(manifest, layout, len(embeds))
    summary["identity_names"] = names
    tmp_ids = out / f".{IDENTITIES_FILE}.tmp"
    with open(tmp_ids, "wb") as fh:
        np.save(fh, np.ascontiguousarray(embeds, dtype=np.float32))
    tmp_summary = out / f".{SUMMARY_FILE}.tmp"
    tmp_summary.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for tmp, final in ((tmp_ids, ids_path), (tmp_summary, summary_path), (tmp_plan, plan_path)):
        os.replace(tmp, final)
    summary.pop("identity_names")
    return PlanInfo(
        plan_path=plan_path.resolve(),
        identities_path=ids_path.resolve(),
        summary_path=summary_path.resolve(),
        num_rows=layout.num_rows,
        num_shards=(layout.num_rows + spp - 1) // spp,
        num_identities=len(embeds),
        samples_per_shard=spp,
        summary=summary,
    )


def plan_summary(manifest: Manifest, layout: _Layout, num_identities: int) -> dict:
    """Target vs planned counts per bin (emotion, controls, pose axes) and the top-up report."""
    n = layout.num_rows

    def counts(codes: np.ndarray, k: int) -> list[int]:
        return np.bincount(codes.astype(np.int64), minlength=k).tolist()

    emo_target = np.asarray(manifest.targets.emotion.as_list())
    summary: dict = {
        "num_rows": n,
        "num_identities": num_identities,
        "samples_per_shard": manifest.output.samples_per_shard,
        "emotion": {
            "bins": list(EMOTION_NAMES),
            "target": (emo_target * n).tolist(),
            "planned": counts(layout.emotion, NUM_EMOTIONS),
        },
        "controls": {
            "bins": list(CONTROL_SETS),
            "target": (np.asarray(manifest.targets.controls_list()) * n).tolist(),
            "planned": counts(layout.controls, len(CONTROL_SETS)),
        },
        "pose": {
            axis: {
                "kind": bins.kind,
                "edges": bins.edges.tolist(),
                "target": (bins.weights * n).tolist(),
                "planned": counts(codes, len(bins.weights)),
            }
            for axis, bins, codes in zip(POSE_AXES, layout.pose_bins, layout.pose_codes)
        },
    }
    if layout.topup is not None:
        summary["topup"] = {"sufficient": layout.topup.sufficient, "rows": layout.topup.rows()}
        # In top-up mode the target is the final (source + synthetic) share; report it that way.
        final = int(layout.topup.after.sum())
        summary["emotion"]["target"] = (emo_target * final).tolist()
        summary["emotion"]["source"] = layout.topup.source.tolist()
        summary["emotion"]["after"] = layout.topup.after.tolist()
    return summary

