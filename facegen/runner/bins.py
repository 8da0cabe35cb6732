"""Per-bin counts of a finished dataset for ``summary.json``: target / planned / written / accepted /
achieved / shortfall per emotion class, control set and pose stratum.

* ``target``   what the manifest asked for (real-valued; top-ups: the final source + synthetic count),
* ``planned``  plan rows per bin,
* ``written``  images in the dataset per bin of their *target* label,
* ``accepted`` of those, the ones within every tolerance (all of them when nothing was checked),
* ``achieved`` accepted images per bin of their *measured* value (emotion class, measured angle);
  ``null`` when that attribute was not measured -- "achieved" always means measured,
* ``shortfall`` planned - accepted (>= 0),
* ``tv_distance_achieved_vs_target`` (emotion and pose axes, when measured): total-variation distance of
  the achieved distribution from the target (pose: measured values outside every stratum count as a bin
  of their own, which the target gives no weight).

``counted_by`` says which: "measured" or "planned (not measured)" (verification off).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from facegen.labels import CONTROL_SETS, EMOTION_NAMES

POSE_AXES = ("yaw", "pitch", "roll")


def _values(table: pa.Table, column: str) -> np.ndarray:
    if column not in table.column_names or table.num_rows == 0:
        return np.zeros(0)
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False))


def _class_counts(values: np.ndarray, classes: list[Any]) -> list[int]:
    return [int(np.sum(values == c)) for c in classes]


def _histogram(values: np.ndarray, edges: np.ndarray, tolerance: float | None) -> tuple[list[int], int]:
    """Counts per stratum and how many finite values fell outside every stratum. A constant axis
    (one zero-width stratum) counts values within `tolerance` of it (all finite ones if None)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(edges) == 2 and edges[0] == edges[1]:
        inside = np.abs(v - edges[0]) <= (tolerance if tolerance is not None else np.inf)
        return [int(inside.sum())], int((~inside).sum())
    counts, _ = np.histogram(v, edges)
    return counts.astype(int).tolist(), int(len(v) - counts.sum())


def _row(target: list[float], planned: list[int], written: list[int], accepted: list[int], achieved: list[int] | None) -> dict[str, Any]:
    return {
        "target": [round(float(t), 6) for t in target],
        "planned": planned,
        "written": written,
        "accepted": accepted,
        "achieved": achieved,
        "shortfall": [max(0, p - a) for p, a in zip(planned, accepted)],
    }


def tv_distance(counts: list[int] | np.ndarray, target: list[float] | np.ndarray) -> float | None:
    """Total-variation distance between two count vectors' distributions (None when one is empty)."""
    c, t = np.asarray(counts, np.float64), np.asarray(target, np.float64)
    if c.sum() <= 0 or t.sum() <= 0:
        return None
    return round(float(0.5 * np.abs(c / c.sum() - t / t.sum()).sum()), 6)


def bin_summary(
    labels: pa.Table,
    plan: pa.Table,
    plan_summary: dict[str, Any],
    *,
    measured: dict[str, bool],
    pose_tolerance: float | None = None,
) -> dict[str, Any]:
    """Per-bin counts (see module docstring). `labels`: generated rows (GENERATED_SCHEMA); `plan`: the
    plan's emotion / controls / yaw / pitch / roll; `plan_summary`: plan_summary.json (targets, pose
    strata, top-up counts); `measured`: which of "pose" / "emotion" the estimators measured."""
    accepted_mask = _values(labels, "accepted").astype(bool) if "accepted" in labels.column_names else np.ones(labels.num_rows, bool)
    ok = labels.filter(pa.array(accepted_mask)) if labels.num_rows else labels
    counted_by = "measured" if any(measured.values()) else "planned (not measured)"
    out: dict[str, Any] = {"counted_by": counted_by}

    classes = list(range(len(EMOTION_NAMES)))
    emo_target = plan_summary.get("emotion", {}).get("target") or [0.0] * len(classes)
    emotion = _row(
        emo_target,
        _class_counts(_values(plan, "emotion"), classes),
        _class_counts(_values(labels, "target_emotion"), classes),
        _class_counts(_values(ok, "target_emotion"), classes),
        _class_counts(_values(ok, "measured_emotion"), classes) if measured.get("emotion") else None,
    )
    emotion["bins"] = list(EMOTION_NAMES)
    if "source" in plan_summary.get("emotion", {}):  # top-up: the source's labels count toward the target
        source = [int(x) for x in plan_summary["emotion"]["source"]]
        emotion["source"] = source
        emotion["after_accepted"] = [s + a for s, a in zip(source, emotion["accepted"])]
        emotion["after_achieved"] = [s + a for s, a in zip(source, emotion["achieved"])] if emotion["achieved"] is not None else None
    final = emotion.get("after_achieved") if "source" in emotion else emotion["achieved"]
    emotion["tv_distance_achieved_vs_target"] = tv_distance(final, emo_target) if final is not None else None
    out["emotion"] = emotion

    ctl_target = plan_summary.get("controls", {}).get("target") or [0.0] * len(CONTROL_SETS)
    controls = _row(
        ctl_target,
        _class_counts(_values(plan, "controls"), list(CONTROL_SETS)),
        _class_counts(_values(labels, "controls"), list(CONTROL_SETS)),
        _class_counts(_values(ok, "controls"), list(CONTROL_SETS)),
        None,  # a control set is how an image was made, not something to measure
    )
    controls["bins"] = list(CONTROL_SETS)
    out["controls"] = controls

    for axis in POSE_AXES:
        spec = plan_summary.get("pose", {}).get(axis)
        if not spec:
            continue
        edges = np.asarray(spec["edges"], np.float64)
        achieved, outside = _histogram(_values(ok, f"measured_{axis}"), edges, pose_tolerance) if measured.get("pose") else (None, None)
        row = _row(
            spec["target"],
            [int(x) for x in spec["planned"]],
            _histogram(_values(labels, f"target_{axis}"), edges, None)[0],
            _histogram(_values(ok, f"target_{axis}"), edges, None)[0],
            achieved,
        )
        row["edges"] = edges.tolist()
        row["achieved_outside_edges"] = outside
        # measured mass outside every stratum counts as a miss (a bin the target gives no weight)
        row["tv_distance_achieved_vs_target"] = (
            tv_distance([*achieved, outside], [*spec["target"], 0.0]) if achieved is not None else None
        )
        out[axis] = row
    return out


__all__ = ["bin_summary", "tv_distance"]
