"""Planning: a manifest becomes one PLAN_SCHEMA row per image, written streaming to Parquet.

Layout (all deterministic from `manifest.seed`):
  1. Compact bin codes — identity (int32), emotion (int8), control set (int8) and one pose stratum per
     axis (int16) — with exact largest-remainder counts, mixed so every shard sees all bins:
       - plans of up to `IN_MEMORY_MAX_ROWS` rows: `counts[k]` copies of code k, shuffled in place by
         the stream's own seeded generator (~12 bytes per row in memory);
       - bigger plans, in bounded memory: row i gets the code of position pi(i) in the same sorted
         sequence, where pi is a keyed pseudo-random permutation of [0, n) (a Feistel network with
         cycle walking), computed block by block. Counts stay exact; nothing is O(rows).
  2. Rows are then produced in fixed blocks of `BLOCK_ROWS`; block b draws its continuous values
     (angles inside strata, valence/arousal, exemplar picks) from SeedSequence(seed, (stream, b)),
     so the values never depend on how the writer slices its output.
  3. Per-sample noise seeds are splitmix64(base + index) (63 bits): independent of everything else.
Row groups hold whole shards (as many as fit in `BLOCK_ROWS` rows; a bigger shard spans several groups),
so a shard's rows are read from its own group(s) and the file has O(rows / BLOCK_ROWS) groups: the
writer's per-group metadata (~25 KB each in memory) stays bounded. Before any of it, `estimate_plan_memory`
is checked against the memory available (`FACEGEN_MAX_PLAN_MEMORY` overrides).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facegen.conditions.emotions import peaked_probs, prior_table, sample_valence_arousal
from facegen.conditions.identities import IDENTITIES_FILE, resolve_identities
from facegen.errors import FacegenError
from facegen.labels import CONTROL_SETS, EMOTION_NAMES, NUM_EMOTIONS, PLAN_SCHEMA
from facegen.manifest.distributions import AxisBins, apportion, axis_bins, shuffled_codes
from facegen.manifest.limits import ENV_PLAN_MEMORY, human_bytes, plan_memory_budget
from facegen.manifest.schema import Manifest
from facegen.manifest.topup import TopUp, plan_topup

log = logging.getLogger(__name__)

BLOCK_ROWS = 1 << 16
#: Plans up to this many rows shuffle their bin codes in memory (~12 bytes per row); bigger ones stream.
IN_MEMORY_MAX_ROWS = 1 << 22
_FEISTEL_ROUNDS = 4
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
PLAN_FILE = "plan.parquet"
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


class _Permutation:
    """A keyed pseudo-random bijection of [0, n), stateless (any block of indices maps on its own).

    A 4-round Feistel network on the b = bit_length(n - 1) bits covering n, split into halves of
    ceil(b/2) and floor(b/2) bits whose widths swap every round (so odd b works and the domain 2**b
    is < 2n), restricted to [0, n) by cycle walking (on average < 2 passes). Round function: the top
    bits of a keyed multiply-xorshift-multiply hash, in 32-bit arithmetic while b <= 32.
    """

    def __init__(self, n: int, seed: int, stream: int) -> None:
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.dtype = np.uint32 if bits <= 32 else np.uint64
        word = 32 if self.dtype is np.uint32 else 64
        self.widths = (bits - bits // 2, bits // 2)  # (left, right) at the start; equal again after 4 rounds
        self.word = word
        keys = np.random.SeedSequence(seed, spawn_key=(stream, 1)).generate_state(_FEISTEL_ROUNDS, np.uint64)
        self.keys = (keys >> np.uint64(64 - word)).astype(self.dtype) if word == 32 else keys
        self.mul = (np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)) if word == 32 else (_MUL1, _MUL2)
        self.xorshift = self.dtype(15 if word == 32 else 29)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        t = self.dtype
        wl, wr = self.widths
        left, right = x >> t(wr), x & t((1 << wr) - 1)
        with np.errstate(over="ignore"):
            for key in self.keys:
                z = right ^ key
                z *= self.mul[0]
                z ^= z >> self.xorshift
                z *= self.mul[1]
                z >>= t(self.word - wl)  # the hash's top wl bits: the width of `left`
                z ^= left
                left, right, wl, wr = right, z, wr, wl
        return (left << t(wr)) | right

    def __call__(self, index: np.ndarray) -> np.ndarray:
        y = self._encrypt(np.asarray(index).astype(self.dtype))
        n = self.dtype(self.n) if self.n < 2 ** self.word else None
        if n is not None:
            todo = np.flatnonzero(y >= n)
            while len(todo):
                y[todo] = self._encrypt(y[todo])
                todo = todo[y[todo] >= n]
        return y.astype(np.int64)


class _Codes:
    """Bin codes of one categorical stream with exact `counts`, mixed over the rows.

    In memory (small plans): the shuffled code array itself. Streaming (big plans): code of row i is
    the bin holding position pi(i) of the sorted code sequence, so block b needs only its own rows.
    """

    def __init__(self, counts: np.ndarray, n: int, seed: int, stream: int, dtype: type, streaming: bool) -> None:
        self.counts = np.asarray(counts, dtype=np.int64)
        self.dtype = dtype
        nonzero = np.flatnonzero(self.counts)
        self.constant = int(nonzero[0]) if len(nonzero) == 1 else None
        self.codes: np.ndarray | None = None
        self.perm: _Permutation | None = None
        self.cumulative = np.cumsum(self.counts)
        # Equal shares (identities): counts are q + 1 for the first r bins, then q: code by division.
        q, r = divmod(n, max(1, len(self.counts)))
        self.even = (q, r) if q > 0 and np.array_equal(self.counts, np.repeat([q + 1, q], [r, len(self.counts) - r])) else None
        if not streaming:
            self.codes = shuffled_codes(self.counts, _rng(seed, stream), dtype)
        elif self.constant is None:
            self.perm = _Permutation(n, seed, stream)

    def block(self, start: int, stop: int) -> np.ndarray:
        if self.codes is not None:
            return self.codes[start:stop]
        if self.constant is not None:
            return np.full(stop - start, self.constant, dtype=self.dtype)
        assert self.perm is not None
        position = self.perm(np.arange(start, stop, dtype=np.uint64))
        if self.even is not None:
            q, r = self.even
            head = r * (q + 1)
            return np.where(position < head, position // (q + 1), r + (position - head) // q).astype(self.dtype)
        return np.searchsorted(self.cumulative, position, side="right").astype(self.dtype)


@dataclass
class _Layout:
    num_rows: int
    identity: _Codes
    emotion: _Codes
    controls: _Codes
    pose_codes: list[_Codes]
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
    streaming = n > IN_MEMORY_MAX_ROWS
    topup = plan_topup(manifest) if manifest.balance is not None else None
    emotion_counts = topup.synthetic if topup is not None else apportion(manifest.targets.emotion.as_list(), n)

    def codes(counts: np.ndarray, stream: int, dtype: type) -> _Codes:
        return _Codes(counts, n, seed, stream, dtype, streaming)

    identity = codes(apportion(np.ones(num_identities), n), _STREAM_IDENTITY_ORDER, np.int32)
    emotion = codes(emotion_counts, _STREAM_EMOTION_ORDER, np.int8)
    controls = codes(apportion(manifest.targets.controls_list(), n), _STREAM_CONTROL_ORDER, np.int8)
    pose_bins, pose_codes = [], []
    for axis, stream in zip(POSE_AXES, _STREAM_POSE_ORDER):
        bins = axis_bins(getattr(manifest.targets.pose, axis))
        pose_bins.append(bins)
        pose_codes.append(codes(apportion(bins.weights, n), stream, np.int16))
    return _Layout(n, identity, emotion, controls, pose_codes, pose_bins, emotion_counts, topup)


#: Bytes per row of one block while it is built and encoded (measured ~250; generous).
_BLOCK_BYTES_PER_ROW = 600
#: In-memory metadata the Parquet writer keeps per row group until it closes the file.
_ROW_GROUP_BYTES = 32 * 1024
_FIXED_OVERHEAD = 64 << 20


def estimate_plan_memory(manifest: Manifest, num_identities: int) -> int:
    """Upper estimate of the bytes `write_plan` allocates beyond the interpreter's baseline."""
    n = _rows_for(manifest, num_identities)
    spp = manifest.output.samples_per_shard
    estimate = _FIXED_OVERHEAD + num_identities * 512 * 16  # float64 load + float32 table + copy on save
    estimate += (16 * n) if n <= IN_MEMORY_MAX_ROWS else 0  # codes + np.repeat temporaries
    estimate += 3 * BLOCK_ROWS * _BLOCK_BYTES_PER_ROW  # current block + the row group being assembled
    estimate += _num_row_groups(n, spp) * _ROW_GROUP_BYTES
    estimate += 8 * (num_identities + 2 * 10_000)  # per-bin counts and edges
    bank = manifest.targets.expression.exemplars
    if bank is not None:
        try:
            estimate += 8 * bank.stat().st_size  # decompressed columns
        except OSError:
            pass
    return int(estimate)


def _rows_per_group(spp: int) -> int:
    """Row groups end every this many rows (whole shards); bigger shards also split every BLOCK_ROWS."""
    return max(1, BLOCK_ROWS // spp) * spp


def _num_row_groups(n: int, spp: int) -> int:
    per_group = _rows_per_group(spp)
    if per_group <= BLOCK_ROWS:
        return -(-n // per_group)
    return -(-n // per_group) * (-(-per_group // BLOCK_ROWS) + 1)


def check_plan_memory(manifest: Manifest, num_identities: int) -> int:
    """The memory estimate, or a FacegenError when it exceeds what planning may use."""
    estimate = estimate_plan_memory(manifest, num_identities)
    budget, origin = plan_memory_budget()
    n = _rows_for(manifest, num_identities)
    log.info("planning %d rows: estimated peak memory %s (budget %s)", n, human_bytes(estimate), human_bytes(budget) if budget else "unknown")
    if budget is not None and estimate > budget:
        field = ("balance", "total") if manifest.balance is not None else ("images_per_identity",)
        raise manifest.error(
            field,
            f"planning {n:,} images needs about {human_bytes(estimate)} of memory but {origin} is {human_bytes(budget)}; "
            f"plan fewer images (or larger output.samples_per_shard), free memory, or set {ENV_PLAN_MEMORY}",
        )
    return estimate


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
    emotion = layout.emotion.block(start, stop)
    angles = [bins.sample(codes.block(start, stop).astype(np.int64), rng) for bins, codes in zip(layout.pose_bins, layout.pose_codes)]
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
        pa.array(layout.identity.block(start, stop)),
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
        pc.take(pa.array(CONTROL_SETS, pa.string()), pa.array(layout.controls.block(start, stop))),
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
    check_plan_memory(manifest, len(embeds))
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
    check_plan_memory(manifest, len(embeds))
    layout = _layout(manifest, len(embeds))
    spp = manifest.output.samples_per_shard
    plan_path, ids_path, summary_path = out / PLAN_FILE, out / IDENTITIES_FILE, out / SUMMARY_FILE
    tmp_plan = out / f".{PLAN_FILE}.tmp"
    batches = _iter_batches(manifest, layout)
    try:
        first_batch = next(batches)  # bank/user errors surface here, before any file is opened
        with pq.ParquetWriter(tmp_plan, PLAN_SCHEMA, compression="zstd", compression_level=1, use_dictionary=_DICTIONARY_COLUMNS) as writer:
            _write_row_groups(writer, _chain(first_batch, batches), layout.num_rows, spp)
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


def _write_row_groups(writer: pq.ParquetWriter, batches: Iterator[pa.RecordBatch], num_rows: int, spp: int) -> None:
    """Write blocks as row groups of whole shards: a group ends every `_rows_per_group(spp)` rows and,
    for shards bigger than a block, also once it holds BLOCK_ROWS rows (never mid-way through a batch
    slice). At most two blocks are held at a time."""
    per_group = _rows_per_group(spp)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    position = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            length = min(batch.num_rows - offset, (position // per_group + 1) * per_group - position)
            pending.append(batch.slice(offset, length))
            pending_rows += length
            offset += length
            position += length
            if position % per_group == 0 or position == num_rows or pending_rows >= BLOCK_ROWS:
                writer.write_table(pa.Table.from_batches(pending, schema=PLAN_SCHEMA), row_group_size=pending_rows)
                pending, pending_rows = [], 0
    if pending:
        writer.write_table(pa.Table.from_batches(pending, schema=PLAN_SCHEMA), row_group_size=pending_rows)


def plan_summary(manifest: Manifest, layout: _Layout, num_identities: int) -> dict:
    """Target vs planned counts per bin (emotion, controls, pose axes) and the top-up report."""
    n = layout.num_rows

    def counts(codes: _Codes, k: int) -> list[int]:
        assert len(codes.counts) == k
        return codes.counts.tolist()  # exact by construction (== bincount of the codes)

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

