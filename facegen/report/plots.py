"""``report.png``: per bin, target vs planned vs measured-accepted ("achieved"; only where measured)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from facegen.io.fs import Location
from facegen.report.bins import ANGLES, BinTable, compute_bins
from facegen.report.columns import ACHIEVED, NOT_MEASURED, accepted_mask, measured_array, measured_mask, target_array

REPORT_NAME = "report.png"


def _manifest_dict(manifest: Any | None) -> dict[str, Any] | None:
    if manifest is None or isinstance(manifest, dict):
        return manifest
    dump = getattr(manifest, "model_dump", None)
    return dump(mode="json") if dump is not None else None


def _bars(ax: Any, table: BinTable, axis: str, rotation: int = 0) -> None:
    """Grouped bars per bin: target, planned and (only when measured) achieved."""
    rows = table.axes.get(axis, [])
    x = np.arange(len(rows))
    measured = table.measured.get(axis, False)
    series = [("target", [r.target for r in rows], "0.55"),
              ("planned (written with this target)" if measured else NOT_MEASURED, [r.planned for r in rows], "tab:blue")]
    if measured:
        series.append((ACHIEVED, [r.measured_accepted or 0 for r in rows], "tab:green"))
    width = 0.8 / len(series)
    for i, (label, values, color) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label, color=color)
    top = max((max(v, default=0) for _, v, _ in series), default=0)
    ax.set_ylim(0, max(1, top) * 1.25)  # room for the legend above the bars
    ax.set_xticks(x, [r.bin for r in rows], rotation=rotation, fontsize=8)
    ax.set_title(f"{axis}: {table.status(axis)}")
    ax.legend(fontsize=8, loc="upper right")


def render_report(labels: pa.Table, plan: pa.Table, manifest: Any | None = None, bins: BinTable | None = None) -> bytes:
    """PNG bytes: emotion classes, control sets, yaw / pitch / roll bins and the valence / arousal cloud."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = bins if bins is not None else compute_bins(plan, labels, _manifest_dict(manifest))
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), dpi=80)
    _bars(axes[0, 0], table, "emotion", rotation=35)
    _bars(axes[0, 1], table, "controls")

    ax = axes[0, 2]
    va = [target_array(labels, "valence"), target_array(labels, "arousal")]
    if va[0] is not None and va[1] is not None:
        ax.scatter(va[0], va[1], s=6, alpha=0.5, label="target")
    mv, ma = measured_array(labels, "valence"), measured_array(labels, "arousal")
    if mv is not None and ma is not None:
        keep = measured_mask(labels) & accepted_mask(labels)
        ax.scatter(mv[keep], ma[keep], s=6, alpha=0.6, color="tab:green", label=ACHIEVED)
        ax.set_title("valence / arousal: target and measured")
    else:
        ax.set_title(f"valence / arousal: target, {NOT_MEASURED}")
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.legend(fontsize=8)

    for ax, angle in zip(axes[1], ANGLES):
        _bars(ax, table, angle, rotation=20)
        ax.set_title(f"{angle} (degrees): {table.status(angle)}")
    status = ACHIEVED + " where measured" if table.any_measured else NOT_MEASURED
    fig.suptitle(f"{labels.num_rows} samples, {plan.num_rows} planned; {status}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(root: Location, labels: pa.Table, plan: pa.Table, manifest: Any | None = None) -> None:
    root.write_bytes_atomic(REPORT_NAME, render_report(labels, plan, manifest))
