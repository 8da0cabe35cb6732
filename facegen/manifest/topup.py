"""Top-up balancing: how many synthetic images per emotion so source + synthetic hits the target.

With source counts s_k, target shares p_k and `total` new images T:
  * the smallest dataset containing the source with exactly the target shares has
    M = max_k s_k / p_k images (over classes with p_k > 0); the deficits are d_k = p_k M - s_k >= 0,
    D = sum d_k = M - S;
  * T >= D: fill every deficit exactly and spread the remaining T - D by the target shares, so the
    final counts are p_k (S + T) (source classes with p_k = 0 cannot be removed, only diluted);
  * T < D: give each class T d_k / D, i.e. close every deficit by the same fraction.
Real-valued quotas become integers by largest remainder (they sum to T exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facegen.conditions.emotions import class_index
from facegen.labels import EMOTION_NAMES, NUM_EMOTIONS
from facegen.manifest.distributions import apportion_quotas
from facegen.manifest.schema import Manifest


@dataclass(frozen=True)
class TopUp:
    """Per-class counts (EMOTION_NAMES order) before and after the top-up."""

    source: np.ndarray  # existing images per class
    synthetic: np.ndarray  # images to generate per class (sums to total)
    target_share: np.ndarray  # p_k
    deficit: np.ndarray  # real-valued d_k (see module docstring)
    sufficient: bool  # total covered every deficit

    @property
    def after(self) -> np.ndarray:
        return self.source + self.synthetic

    def rows(self) -> list[dict]:
        """One dict per class for reports: source, synthetic, after, shares before/after/target."""
        s_total = max(int(self.source.sum()), 1)
        a_total = max(int(self.after.sum()), 1)
        return [
            {
                "class": name,
                "source": int(self.source[k]),
                "synthetic": int(self.synthetic[k]),
                "after": int(self.after[k]),
                "share_before": float(self.source[k] / s_total),
                "share_after": float(self.after[k] / a_total),
                "share_target": float(self.target_share[k]),
            }
            for k, name in enumerate(EMOTION_NAMES)
        ]


def topup_counts(source_counts: np.ndarray, target_share: np.ndarray, total: int) -> TopUp:
    """Synthetic counts per class (see module docstring for the rule)."""
    s = np.asarray(source_counts, dtype=np.int64)
    p = np.asarray(target_share, dtype=np.float64)
    if s.shape != p.shape or (s < 0).any() or (p < 0).any() or p.sum() <= 0 or total < 0:
        raise ValueError("source counts and target shares must be non-negative vectors of one length")
    p = p / p.sum()
    live = p > 0
    m = float(np.max(s[live] / p[live])) if s.sum() else 0.0
    deficit = np.where(live, np.maximum(p * m - s, 0.0), 0.0)
    need = float(deficit.sum())
    if total >= need - 1e-9:
        quotas = deficit + (total - need) * p
        sufficient = True
    else:
        quotas = total * deficit / need
        sufficient = False
    quotas *= total / quotas.sum() if quotas.sum() > 0 else 0.0  # float noise only
    return TopUp(s, apportion_quotas(quotas, total), p, deficit, sufficient)


def read_source_counts(manifest: Manifest) -> np.ndarray:
    """Per-class counts of `balance.column` in `balance.source` (class names or 0..7 indices)."""
    bal = manifest.balance
    assert bal is not None
    try:
        schema = pq.read_schema(bal.source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise manifest.error(("balance", "source"), f"cannot read {bal.source.name} as Parquet ({exc}); give a valid Parquet file") from None
    if bal.column not in schema.names:
        if "measured_emotion" in schema.names:  # a facegen dataset: planned values are target_*, see labels.py
            raise manifest.error(
                ("balance", "column"),
                f"{bal.source.name} is a facegen dataset's labels without a column {bal.column!r}; use column: "
                "measured_emotion (what its estimators measured) or target_emotion (what was planned)",
            )
        raise manifest.error(
            ("balance", "column"),
            f"{bal.source.name} has no column {bal.column!r} (has {', '.join(schema.names)}); name the emotion column",
        )
    col = pq.read_table(bal.source, columns=[bal.column]).column(bal.column)
    if bal.column == "measured_emotion":
        col = col.filter(pc.greater_equal(col, 0))  # -1 = not measured: nothing to count
    if col.null_count:
        raise manifest.error(("balance", "column"), f"{bal.column!r} has {col.null_count} empty (null) labels; drop or fill them")
    counts = pc.value_counts(col.combine_chunks())
    out = np.zeros(NUM_EMOTIONS, dtype=np.int64)
    for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
        try:
            out[class_index(value)] += n
        except ValueError as exc:
            raise manifest.error(("balance", "column"), f"{exc}; map the labels to facegen's 8 classes first") from None
    if out.sum() == 0:
        raise manifest.error(("balance", "source"), f"{bal.source.name} has no rows; point it at a non-empty label file")
    return out


def plan_topup(manifest: Manifest) -> TopUp:
    """The manifest's top-up: source counts from `balance`, shares from `targets.emotion`."""
    assert manifest.balance is not None
    return topup_counts(read_source_counts(manifest), np.asarray(manifest.targets.emotion.as_list()), manifest.balance.total)
