"""Everything the dataset card and report.html say, read once from a finished dataset folder.

``README.md`` (card.py) and ``report.html`` (html.py) render the same :class:`CardData`, section by
section (SECTIONS), so the two never disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facegen.io.fs import Location
from facegen.io.lock import read_lock
from facegen.report.bins import BinTable, compute_bins
from facegen.report.columns import NOT_MEASURED, is_measured, measured_fields, target_name
from facegen.report.weights import Weight, dataset_licence, estimator_names, read_model_index, weights_used

LABELS_NAME = "labels.parquet"
PLAN_NAME = "plan.parquet"
REJECTS_NAME = "rejects.parquet"
FAILURES_NAME = "failures.parquet"
REPORT_PNG = "report.png"
PREVIEW_JPG = "preview.jpg"
SHARDS_GLOB = "shards/*.tar"

#: (id, title) of every card section, in order; README.md anchors and report.html <section id> use them.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("how-it-was-made", "How it was made"),
    ("counts-and-distributions", "Counts and distributions"),
    ("samples", "Samples per emotion class"),
    ("rejects-and-shortfall", "Rejects and shortfall"),
    ("intended-use-and-limits", "Intended use and limits"),
    ("loading", "Loading"),
)

#: Label columns the card reads (never the wide list columns).
_FIELDS = ("emotion", "yaw", "pitch", "roll", "valence", "arousal")
_EXTRA = ("key", "shard", "identity", "controls", "round", "measured", "accepted", "reject_reason", "face_detected",
          "identity_similarity", "landmark_nme")


@dataclass
class CardData:
    """What the card says about one dataset."""

    title: str
    model_name: str  # the model's own name (model_index.json), else the preset / folder name
    verify_mode: str  # off | measure | reject | regenerate
    samples: int
    plan_rows: int
    identities: int
    shards: int
    complete: bool
    summary: dict[str, Any]
    lock: dict[str, Any]
    model_index: dict[str, Any]
    bins: BinTable
    measured: bool
    measured_fields: list[str]
    estimators: dict[str, str]
    weights: list[Weight]
    licence: tuple[str, str | None]
    rounds: int | None
    rejects: int | None  # None: no rejects.parquet (a dataset written before in-loop verification)
    rejects_by_reason: dict[str, int]
    failures: int
    quality: dict[str, float] = field(default_factory=dict)  # mean measured identity similarity, NME, ...
    images: dict[str, bytes] = field(default_factory=dict)  # report.png / preview.jpg bytes, when drawn

    @property
    def status(self) -> str:
        return "measured in the loop" if self.measured else NOT_MEASURED


def _read_columns(root: Location, rel: str) -> pa.Table | None:
    """The card's columns of a Parquet file in the dataset (either label naming), or None when absent."""
    if not root.exists(rel):
        return None
    with root.open(rel, "rb") as f:
        schema = pq.read_schema(f)
    empty = schema.empty_table()
    wanted = [n for n in _EXTRA if n in schema.names]
    wanted += [n for n in (target_name(empty, fld) for fld in _FIELDS) if n]
    wanted += [n for n in schema.names if n.startswith("measured_") and not n.endswith("_probs")]
    with root.open(rel, "rb") as f:
        return pq.read_table(f, columns=sorted(set(wanted), key=wanted.index))


def _rows(root: Location, rel: str) -> int:
    if not root.exists(rel):
        return 0
    with root.open(rel, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def _quality(labels: pa.Table) -> dict[str, float]:
    out: dict[str, float] = {}
    if not is_measured(labels):
        return out
    measured = np.array([bool(v) for v in labels.column("measured").to_pylist()])
    for name in ("identity_similarity", "landmark_nme"):
        if name in labels.column_names:
            values = np.array([np.nan if v is None else float(v) for v in labels.column(name).to_pylist()])[measured]
            if np.isfinite(values).any():
                out[f"mean {name}"] = float(np.nanmean(values))
    if "face_detected" in labels.column_names:
        detected = np.array([bool(v) for v in labels.column("face_detected").to_pylist()])[measured]
        out["face detected (share)"] = float(detected.mean()) if len(detected) else 0.0
    return out


def collect_card_data(root: Location, summary: dict[str, Any] | None = None) -> CardData:
    """Read the lock, plan, labels, rejects and failures of a finished dataset (and its drawn reports)."""
    summary = dict(summary or {})
    lock = read_lock(root) or {}
    manifest = lock.get("manifest") if isinstance(lock.get("manifest"), dict) else {}
    labels = _read_columns(root, LABELS_NAME)
    plan = _read_columns(root, PLAN_NAME)
    if labels is None:
        labels = pa.table({"key": pa.array([], pa.string())})
    if plan is None:
        plan = labels.schema.empty_table()
    rejects = _read_columns(root, REJECTS_NAME)
    model = lock.get("model") or {}
    model_index = read_model_index(model.get("dir"))
    verification = summary.get("verification") if isinstance(summary.get("verification"), dict) else {}
    estimators = estimator_names(manifest, verification or None)
    weights = weights_used(model.get("name"), model_index, estimators)
    # distinct values / maximum by Arrow compute (a million rows: no Python list or set of them)
    identities = len(pc.unique(labels.column("identity"))) if "identity" in labels.column_names else 0
    shards = len(pc.unique(labels.column("shard"))) if "shard" in labels.column_names else 0
    rounds = None
    if "round" in labels.column_names and labels.num_rows:
        rounds = int(pc.max(pc.fill_null(labels.column("round"), 0)).as_py() or 0) + 1
    by_reason: dict[str, int] = {}
    if rejects is not None and "reject_reason" in rejects.column_names:
        for text in rejects.column("reject_reason").to_pylist():
            for reason in filter(None, str(text or "").split(",")):  # "pose,emotion": one image, two reasons
                by_reason[reason] = by_reason.get(reason, 0) + 1
    images = {name: root.read_bytes(name) for name in (REPORT_PNG, PREVIEW_JPG)
              if name in (summary.get("reports") or []) and root.exists(name)}
    name = str(model_index.get("model_name") or os.path.basename(str(model.get("name") or "")) or "unknown")
    return CardData(
        title=f"facegen synthetic faces ({name}, {labels.num_rows} images)",
        model_name=name,
        verify_mode=str(verification.get("mode") or ((manifest.get("verify") or {}).get("mode")) or "off"),
        samples=labels.num_rows,
        plan_rows=int(summary.get("plan_rows", plan.num_rows)),
        identities=identities,
        shards=shards,
        complete=bool(summary.get("complete", labels.num_rows == plan.num_rows)),
        summary=summary,
        lock=lock,
        model_index=model_index,
        bins=compute_bins(plan, labels, manifest),
        measured=is_measured(labels),
        measured_fields=measured_fields(labels),
        estimators=estimators,
        weights=weights,
        licence=dataset_licence(weights, model_known=bool(weights)),
        rounds=rounds,
        rejects=None if rejects is None else rejects.num_rows,
        rejects_by_reason=by_reason,
        failures=_rows(root, FAILURES_NAME),
        quality=_quality(labels),
        images=images,
    )


def emotion_names_present(data: CardData) -> list[str]:
    """Emotion classes the dataset targets (rows of the sample grid)."""
    return [r.bin for r in data.bins.axes.get("emotion", []) if r.target or r.planned]


def size_category(n: int) -> str:
    """Hugging Face ``size_categories`` value for n samples."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"


__all__ = ["SECTIONS", "SHARDS_GLOB", "CardData", "collect_card_data", "emotion_names_present", "size_category"]
