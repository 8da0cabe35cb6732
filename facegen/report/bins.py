"""Per-bin counts of a dataset: target (the plan) / planned (written with that target label) /
measured-accepted (accepted images whose *measured* value falls in the bin).

The one table behind ``facegen inspect``, ``report.png``, the dataset card
and ``report.html``. "Achieved" is used only for measured counts; without measurements an axis says
"planned (not measured)".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from facegen.labels import CONTROL_SETS, EMOTION_NAMES
from facegen.report.columns import (
    ACHIEVED,
    NOT_MEASURED,
    accepted_mask,
    measured_array,
    measured_mask,
    target_array,
    target_values,
)

ANGLES = ("yaw", "pitch", "roll")
#: Bins per angle when the manifest's own strata cannot be read (old or foreign datasets).
DEFAULT_ANGLE_BINS = 6


@dataclass(frozen=True)
class BinRow:
    """One bin: what was asked, what was written as planned, what was measured and accepted."""

    bin: str
    target: int
    planned: int
    measured_accepted: int | None = None  # None: this axis was not measured

    @property
    def shortfall(self) -> int:
        """Images still missing: target minus measured-accepted (or minus planned when not measured)."""
        got = self.planned if self.measured_accepted is None else self.measured_accepted
        return max(0, self.target - got)


@dataclass
class BinTable:
    """Per-axis bin rows; ``measured[axis]`` says whether that axis has measured-accepted counts."""

    axes: dict[str, list[BinRow]] = field(default_factory=dict)
    measured: dict[str, bool] = field(default_factory=dict)

    @property
    def any_measured(self) -> bool:
        return any(self.measured.values())

    def status(self, axis: str) -> str:
        return ACHIEVED if self.measured.get(axis) else NOT_MEASURED


def angle_edges(lock_manifest: dict[str, Any] | None, plan: pa.Table) -> dict[str, np.ndarray]:
    """Bin edges per angle: the planner's own strata from the manifest (so target counts equal the
    manifest's), else DEFAULT_ANGLE_BINS equal bins over the plan's range."""
    out: dict[str, np.ndarray] = {}
    pose = (((lock_manifest or {}).get("targets") or {}).get("pose") or {}) if isinstance(lock_manifest, dict) else {}
    for angle in ANGLES:
        spec = pose.get(angle) if isinstance(pose, dict) else None
        edges = None
        if spec is not None:
            try:
                from facegen.manifest.distributions import axis_bins
                from facegen.manifest.schema import PoseAxis

                edges = np.asarray(axis_bins(PoseAxis.model_validate(spec)).edges, dtype=float)
            except (ValueError, TypeError, ImportError):
                edges = None
        if edges is None:
            values = target_array(plan, angle)
            values = values[np.isfinite(values)] if values is not None else np.zeros(0)
            lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
            edges = np.array([lo, hi]) if hi - lo < 1e-6 else np.linspace(lo, hi, DEFAULT_ANGLE_BINS + 1)
        out[angle] = edges
    return out


def _histogram(values: np.ndarray | None, edges: np.ndarray) -> np.ndarray:
    n = len(edges) - 1
    if values is None:
        return np.zeros(n, dtype=int)
    values = values[np.isfinite(values)]
    if n == 1 and edges[1] - edges[0] < 1e-6:  # a constant angle: one bin holds every value
        return np.array([len(values)])
    counts, _ = np.histogram(values, edges)
    return counts.astype(int)


def _angle_label(edges: np.ndarray, i: int) -> str:
    if len(edges) == 2 and edges[1] - edges[0] < 1e-6:
        return f"{edges[0]:+.1f}"
    return f"[{edges[i]:+.1f},{edges[i + 1]:+.1f}]"


def compute_bins(plan: pa.Table, labels: pa.Table | None, lock_manifest: dict[str, Any] | None = None) -> BinTable:
    """Emotion class, control set and yaw / pitch / roll bins of a dataset."""
    table = BinTable()
    labels = labels if labels is not None else plan.schema.empty_table()
    keep = measured_mask(labels) & accepted_mask(labels)

    target, planned = Counter(target_values(plan, "emotion") or []), Counter(target_values(labels, "emotion") or [])
    measured_emotion = measured_array(labels, "emotion")
    got = Counter(int(v) for v in measured_emotion[keep] if np.isfinite(v)) if measured_emotion is not None else None
    table.axes["emotion"] = [
        BinRow(name, target[i], planned[i], None if got is None else got[i]) for i, name in enumerate(EMOTION_NAMES)
    ]
    table.measured["emotion"] = got is not None

    target, planned = Counter(target_values(plan, "controls") or []), Counter(target_values(labels, "controls") or [])
    table.axes["controls"] = [BinRow(n, target[n], planned[n]) for n in CONTROL_SETS if target[n] or planned[n]]
    table.measured["controls"] = False  # a control set is how an image was made, never measured

    for angle, edges in angle_edges(lock_manifest, plan).items():
        t = _histogram(target_array(plan, angle), edges)
        p = _histogram(target_array(labels, angle), edges)
        measured = measured_array(labels, angle)
        m = _histogram(np.where(keep, measured, np.nan), edges) if measured is not None else None
        table.axes[angle] = [
            BinRow(_angle_label(edges, i), int(t[i]), int(p[i]), None if m is None else int(m[i])) for i in range(len(t))
        ]
        table.measured[angle] = m is not None
    return table


def format_bins(table: BinTable) -> list[str]:
    """Plain-text per-bin tables (what `facegen inspect` prints)."""
    lines: list[str] = []
    for axis, rows in table.axes.items():
        measured = table.measured.get(axis, False)
        lines.append("")
        if measured:
            lines.append(f"{axis:<22} {'target':>7} {'planned':>8} {'achieved':>9} {'short':>6}   achieved = measured, accepted")
            lines.extend(f"  {r.bin:<20} {r.target:>7} {r.planned:>8} {r.measured_accepted:>9} {r.shortfall:>6}" for r in rows)
        else:
            lines.append(f"{axis:<22} {'target':>7} {'planned':>8}   {NOT_MEASURED}")
            lines.extend(f"  {r.bin:<20} {r.target:>7} {r.planned:>8}" for r in rows)
    return lines


__all__ = ["ANGLES", "BinRow", "BinTable", "angle_edges", "compute_bins", "format_bins"]
