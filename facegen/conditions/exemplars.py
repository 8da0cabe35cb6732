"""Exemplar banks: real landmark sets with the emotion measured on the same face (EXEMPLAR_SCHEMA Parquet).

The planner draws a bank row per sample (PLAN_SCHEMA ``exemplar`` = row position in the loaded bank,
-1 = neutral template), so the landmark expression and the emotion vector agree. Rows are kept in
ascending ``exemplar`` id order; ids must be unique. Landmarks should be frontal and canonically framed
(`facegen.conditions.template.frontalize`) so the planner's pose is the only pose in the render.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facegen.errors import FacegenError
from facegen.io.fs import write_parquet_atomic
from facegen.labels import EMOTION_NAMES, EXEMPLAR_SCHEMA, NUM_EMOTIONS, NUM_LANDMARKS

_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExemplarBank:
    """Arrays of one bank, row-aligned: N exemplars."""

    exemplar: np.ndarray  # (N,) int32 ids, ascending, unique
    landmarks: np.ndarray  # (N, 478, 3) float32
    emotion: np.ndarray  # (N,) int8 index into EMOTION_NAMES
    valence: np.ndarray  # (N,) float32
    arousal: np.ndarray  # (N,) float32
    emotion_probs: np.ndarray  # (N, 8) float32

    def __len__(self) -> int:
        return int(self.exemplar.shape[0])

    def rows_of_emotion(self, emotion: int) -> np.ndarray:
        """Row positions (ascending) of the exemplars labelled with class `emotion`."""
        return np.flatnonzero(self.emotion == emotion)

    def emotion_vectors(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 10) float32: valence, arousal, 8 probabilities — the model's emotion input."""
        rows = np.asarray(rows)
        return np.concatenate(
            [self.valence[rows, None], self.arousal[rows, None], self.emotion_probs[rows]], axis=1
        ).astype(np.float32)


def load_exemplar_bank(path: str | os.PathLike) -> ExemplarBank:
    """Read and validate an exemplar-bank Parquet file; any problem -> FacegenError naming file + column."""
    where = str(path)
    if not Path(path).is_file():
        raise FacegenError("exemplar bank file not found; check the path (or build one with facegen extract)", where=where)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise FacegenError(f"not a readable Parquet file ({exc.__class__.__name__}); expected an exemplar bank", where=where) from exc
    columns = {}
    for field in EXEMPLAR_SCHEMA:
        if field.name not in table.column_names:
            expected = ", ".join(EXEMPLAR_SCHEMA.names)
            raise FacegenError(f"missing column {field.name!r}; an exemplar bank needs columns {expected}", where=where)
        col = table.column(field.name)
        try:
            col = col.cast(field.type)
        except (pa.ArrowException, ValueError) as exc:
            raise FacegenError(f"column {field.name!r} has type {col.type}, expected {field.type}", where=where) from exc
        if col.null_count:
            raise FacegenError(f"column {field.name!r} has {col.null_count} null value(s); fill or drop those rows", where=where)
        columns[field.name] = col
    if table.num_rows == 0:
        raise FacegenError("exemplar bank has no rows", where=where)
    arrays = {name: _to_numpy(col) for name, col in columns.items()}
    bank = ExemplarBank(
        exemplar=arrays["exemplar"].astype(np.int32),
        landmarks=arrays["landmarks"].reshape(-1, NUM_LANDMARKS, 3).astype(np.float32),
        emotion=arrays["emotion"].astype(np.int8),
        valence=arrays["valence"].astype(np.float32),
        arousal=arrays["arousal"].astype(np.float32),
        emotion_probs=arrays["emotion_probs"].reshape(-1, NUM_EMOTIONS).astype(np.float32),
    )
    _check_values(bank, where)
    order = np.argsort(bank.exemplar, kind="stable")
    if not np.array_equal(order, np.arange(len(bank))):
        bank = ExemplarBank(**{k: getattr(bank, k)[order] for k in bank.__dataclass_fields__})
    for name in bank.__dataclass_fields__:
        getattr(bank, name).setflags(write=False)
    return bank


def write_exemplar_bank(
    path: str | os.PathLike,
    *,
    landmarks: np.ndarray,
    emotion: np.ndarray,
    valence: np.ndarray,
    arousal: np.ndarray,
    emotion_probs: np.ndarray,
    exemplar: np.ndarray | None = None,
) -> Path:
    """Write an exemplar bank (EXEMPLAR_SCHEMA) atomically; ids default to 0..N-1. Returns the path."""
    lm = np.asarray(landmarks, dtype=np.float32)
    n = lm.shape[0]
    if lm.shape != (n, NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks must be (N, {NUM_LANDMARKS}, 3), got {lm.shape}")
    ids = np.arange(n, dtype=np.int32) if exemplar is None else np.asarray(exemplar, dtype=np.int32)
    probs = np.asarray(emotion_probs, dtype=np.float32)
    if probs.shape != (n, NUM_EMOTIONS):
        raise ValueError(f"emotion_probs must be (N, {NUM_EMOTIONS}), got {probs.shape}")
    bank = ExemplarBank(
        exemplar=ids,
        landmarks=lm,
        emotion=np.asarray(emotion, dtype=np.int8),
        valence=np.asarray(valence, dtype=np.float32),
        arousal=np.asarray(arousal, dtype=np.float32),
        emotion_probs=probs,
    )
    for name in ("exemplar", "emotion", "valence", "arousal"):
        if getattr(bank, name).shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {getattr(bank, name).shape}")
    try:
        _check_values(bank, "exemplar bank to write")
    except FacegenError as exc:
        raise ValueError(str(exc)) from exc
    table = pa.table(
        {
            "exemplar": pa.array(bank.exemplar, pa.int32()),
            "landmarks": pa.FixedSizeListArray.from_arrays(pa.array(lm.reshape(-1)), NUM_LANDMARKS * 3),
            "emotion": pa.array(bank.emotion, pa.int8()),
            "valence": pa.array(bank.valence, pa.float32()),
            "arousal": pa.array(bank.arousal, pa.float32()),
            "emotion_probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), NUM_EMOTIONS),
        },
        schema=EXEMPLAR_SCHEMA,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(out, table)
    return out


def _to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)
    return arr.to_numpy(zero_copy_only=False)


def _check_values(bank: ExemplarBank, where: str) -> None:
    def fail(column: str, what: str) -> None:
        raise FacegenError(f"column {column!r}: {what}", where=where)

    if len(np.unique(bank.exemplar)) != len(bank):
        fail("exemplar", "ids must be unique")
    if not np.isfinite(bank.landmarks).all():
        fail("landmarks", "contains NaN or infinite values")
    bad = (bank.emotion < 0) | (bank.emotion >= NUM_EMOTIONS)
    if bad.any():
        fail("emotion", f"value {int(bank.emotion[bad][0])} is not a class index 0..{NUM_EMOTIONS - 1} ({', '.join(EMOTION_NAMES)})")
    for name in ("valence", "arousal"):
        values = getattr(bank, name)
        if not (np.isfinite(values).all() and (np.abs(values) <= 1.0 + 1e-6).all()):
            fail(name, "values must be finite and within [-1, 1]")
    probs = bank.emotion_probs
    if not np.isfinite(probs).all() or (probs < 0).any():
        fail("emotion_probs", "probabilities must be finite and non-negative")
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0) > _PROB_TOLERANCE
    if off.any():
        fail("emotion_probs", f"row {int(np.flatnonzero(off)[0])} sums to {float(sums[off][0]):.4f}, not 1")
