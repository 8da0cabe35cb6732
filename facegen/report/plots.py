"""``report.png``: what the manifest asked for (plan / targets) next to what the dataset holds."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from facegen.io.fs import Location
from facegen.labels import CONTROL_SETS, EMOTION_NAMES

REPORT_NAME = "report.png"


def _counts(table: pa.Table, column: str, values: list[Any]) -> np.ndarray:
    if column not in table.column_names or table.num_rows == 0:
        return np.zeros(len(values))
    col = table.column(column).to_pylist()
    return np.array([sum(1 for v in col if v == value) for value in values], dtype=float)


def _column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names or table.num_rows == 0:
        return np.zeros(0)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def render_report(labels: pa.Table, plan: pa.Table, manifest: Any | None = None) -> bytes:
    """PNG bytes: emotion classes, control sets, yaw/pitch/roll histograms and the V/A cloud."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), dpi=80)
    n = plan.num_rows
    x = np.arange(len(EMOTION_NAMES))
    ax = axes[0, 0]
    ax.bar(x - 0.2, _counts(plan, "emotion", list(range(len(EMOTION_NAMES)))), 0.4, label="planned")
    ax.bar(x + 0.2, _counts(labels, "emotion", list(range(len(EMOTION_NAMES)))), 0.4, label="written (planned, not measured)")
    if manifest is not None:
        target = np.asarray(manifest.targets.emotion.as_list()) * n
        ax.scatter(x, target, marker="_", s=300, color="k", label="target", zorder=3)
    ax.set_xticks(x, EMOTION_NAMES, rotation=35)
    ax.set_title("emotion class")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    xc = np.arange(len(CONTROL_SETS))
    ax.bar(xc - 0.2, _counts(plan, "controls", list(CONTROL_SETS)), 0.4, label="planned")
    ax.bar(xc + 0.2, _counts(labels, "controls", list(CONTROL_SETS)), 0.4, label="written (planned, not measured)")
    ax.set_xticks(xc, CONTROL_SETS)
    ax.set_title("control set")
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    ax.scatter(_column(labels, "valence"), _column(labels, "arousal"), s=6, alpha=0.6)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.set_title("valence / arousal (planned labels of written images)")

    for ax, angle in zip(axes[1], ("yaw", "pitch", "roll")):
        planned, achieved = _column(plan, angle), _column(labels, angle)
        lo = min(planned.min(initial=0), achieved.min(initial=0)) - 1
        hi = max(planned.max(initial=0), achieved.max(initial=0)) + 1
        bins = np.linspace(lo, hi, 21)
        ax.hist(planned, bins, alpha=0.5, label="planned")
        ax.hist(achieved, bins, histtype="step", linewidth=2, label="written (planned, not measured)")
        ax.set_title(f"{angle} (degrees)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{labels.num_rows} of {n} planned samples")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(root: Location, labels: pa.Table, plan: pa.Table, manifest: Any | None = None) -> None:
    root.write_bytes_atomic(REPORT_NAME, render_report(labels, plan, manifest))
