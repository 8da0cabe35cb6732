"""``facegen inspect``: counts, per-bin table and an integrity check of a generated dataset."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facegen.io.fs import TEMP_MARK, Location
from facegen.io.lock import LOCK_NAME
from facegen.io.reader import ShardReader, image_ext
from facegen.io.shards import SHARDS_DIR, ShardPaths, all_shard_stats, file_sha256
from facegen.labels import CONTROL_SETS, EMOTION_NAMES

ANGLE_BINS = 6


@dataclass
class InspectReport:
    """What `inspect_dataset` found; ``ok`` is False when any problem was recorded."""

    dataset: str
    plan_rows: int | None = None
    shards_planned: int = 0
    shards_finished: int = 0
    tar_samples: int = 0
    labels_rows: int | None = None
    sample_failures: int = 0
    bins: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)  # name -> (bin, planned, written; planned labels, not measured)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_tar(root: Location, rel: str) -> tuple[list[str], str]:
    """Sample keys in tar order (each sample must have an image and a json) and the file's sha256."""
    scan = ShardReader(root, rel).scan()
    incomplete = [k for k in scan.keys if "json" not in scan.exts[k] or image_ext(scan.exts[k]) is None]
    if incomplete:
        raise ValueError(f"samples without image or json: {incomplete[:3]}")
    return scan.keys, scan.sha256


def _bins(plan: pa.Table, labels: pa.Table | None) -> dict[str, list[tuple[str, int, int]]]:
    def count(table: pa.Table | None, column: str) -> Counter:
        if table is None or column not in table.column_names:
            return Counter()
        return Counter(table.column(column).to_pylist())

    out: dict[str, list[tuple[str, int, int]]] = {}
    planned, achieved = count(plan, "emotion"), count(labels, "emotion")
    out["emotion"] = [(name, planned[i], achieved[i]) for i, name in enumerate(EMOTION_NAMES)]
    planned, achieved = count(plan, "controls"), count(labels, "controls")
    out["controls"] = [(name, planned[name], achieved[name]) for name in CONTROL_SETS if planned[name] or achieved[name]]
    for angle in ("yaw", "pitch", "roll"):
        values = np.asarray(plan.column(angle).to_numpy(zero_copy_only=False), dtype=float)
        got = (
            np.asarray(labels.column(angle).to_numpy(zero_copy_only=False), dtype=float)
            if labels is not None and angle in labels.column_names
            else np.zeros(0)
        )
        lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
        if hi - lo < 1e-6:
            out[angle] = [(f"{lo:+.1f}", len(values), len(got))]
            continue
        edges = np.linspace(lo, hi, ANGLE_BINS + 1)
        p, _ = np.histogram(values, edges)
        a, _ = np.histogram(got, edges)
        out[angle] = [(f"[{edges[i]:+.1f},{edges[i + 1]:+.1f}]", int(p[i]), int(a[i])) for i in range(ANGLE_BINS)]
    return out


def inspect_dataset(dataset: str, *, check_hashes: bool = True) -> InspectReport:
    """Read every shard and cross-check stats, tars, shard Parquets, labels.parquet and the plan."""
    root = Location(dataset)
    report = InspectReport(dataset=root.url)
    problems = report.problems
    if not root.exists(LOCK_NAME):
        problems.append(f"{LOCK_NAME} missing (not a finished facegen dataset?)")
    plan: pa.Table | None = None
    if root.exists("plan.parquet"):
        with root.open("plan.parquet", "rb") as f:
            plan = pq.read_table(f, columns=["key", "shard", "emotion", "controls", "yaw", "pitch", "roll"])
        report.plan_rows = plan.num_rows
        planned_shards = sorted(set(plan.column("shard").to_pylist()))
    else:
        problems.append("plan.parquet missing")
        planned_shards = []
    report.shards_planned = len(planned_shards)

    stats = all_shard_stats(root)
    report.shards_finished = len(stats)
    for shard in planned_shards:
        if shard not in stats:
            problems.append(f"shard {shard:06d}: no stats file (unfinished or failed)")
    names = root.list(SHARDS_DIR)
    temporaries = [n for n in names if TEMP_MARK in n]
    if temporaries:
        problems.append(f"{len(temporaries)} temporary file(s) left in shards/ (interrupted run; re-run balance)")

    all_keys: list[str] = []
    for shard, st in sorted(stats.items()):
        paths = ShardPaths(shard)
        try:
            keys, sha = _read_tar(root, paths.tar)
        except (OSError, tarfile.TarError, ValueError, EOFError) as exc:
            problems.append(f"shard {shard:06d}: tar unreadable ({type(exc).__name__}: {exc})")
            continue
        if check_hashes and sha != st.tar_sha256:
            problems.append(f"shard {shard:06d}: tar sha256 differs from its stats (file changed after writing; re-run balance to redo it)")
        if check_hashes:
            try:
                if file_sha256(root, paths.parquet)[0] != st.parquet_sha256:
                    problems.append(f"shard {shard:06d}: parquet sha256 differs from its stats (file changed after writing; re-run balance to redo it)")
            except OSError:
                pass  # reported as unreadable below
        try:
            with root.open(paths.parquet, "rb") as f:
                rows = pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowInvalid) as exc:
            problems.append(f"shard {shard:06d}: parquet unreadable ({exc})")
            rows = -1
        if not (len(keys) == st.count == rows):
            problems.append(f"shard {shard:06d}: tar has {len(keys)} samples, stats say {st.count}, parquet has {rows} rows")
        report.sample_failures += st.failures
        all_keys.extend(keys)
    report.tar_samples = len(all_keys)
    dupes = [k for k, n in Counter(all_keys).items() if n > 1]
    if dupes:
        problems.append(f"{len(dupes)} duplicate key(s) across tars, e.g. {dupes[:3]}")
    if report.sample_failures:
        problems.append(f"{report.sample_failures} sample(s) recorded as failed (see failures.parquet)")

    labels: pa.Table | None = None
    if root.exists("labels.parquet"):
        with root.open("labels.parquet", "rb") as f:
            labels = pq.read_table(f)
        report.labels_rows = labels.num_rows
        if labels.num_rows != report.tar_samples:
            problems.append(f"labels.parquet has {labels.num_rows} rows but the tars hold {report.tar_samples} samples")
        elif set(labels.column("key").to_pylist()) != set(all_keys):
            problems.append("labels.parquet keys differ from the keys in the tars")
    else:
        problems.append("labels.parquet missing (run did not finish; re-run balance)")
    _check_summary_and_reports(root, problems)
    if plan is not None:
        if report.tar_samples != plan.num_rows:
            problems.append(f"tars hold {report.tar_samples} samples but the plan has {plan.num_rows} rows")
        extra = set(all_keys) - set(plan.column("key").to_pylist())
        if extra:
            problems.append(f"{len(extra)} key(s) in tars are not in the plan, e.g. {sorted(extra)[:3]}")
        report.bins = _bins(plan, labels)
    return report


def _check_summary_and_reports(root: Location, problems: list[str]) -> None:
    """summary.json is written last by balance: present, complete, and the reports it lists exist."""
    if not root.exists("summary.json"):
        problems.append("summary.json missing (the run was stopped before it finished; re-run balance)")
        return
    try:
        summary = json.loads(root.read_bytes("summary.json"))
    except ValueError as exc:
        problems.append(f"summary.json unreadable ({exc}); re-run balance")
        return
    if not summary.get("complete"):
        problems.append("summary.json says the run is incomplete (see failures.parquet; re-run balance)")
    for name in summary.get("reports", ["report.png", "preview.jpg"]):
        if not root.exists(name) or root.size(name) == 0:
            problems.append(f"{name} missing (re-run balance to redraw the reports)")
    for name, error in (summary.get("report_errors") or {}).items():
        problems.append(f"{name} could not be drawn ({error})")


def format_report(report: InspectReport) -> str:
    """Human-readable multi-line summary (what `facegen inspect` prints)."""
    lines = [
        f"dataset        {report.dataset}",
        f"plan rows      {report.plan_rows}",
        f"shards         {report.shards_finished} finished / {report.shards_planned} planned",
        f"tar samples    {report.tar_samples}",
        f"labels rows    {report.labels_rows}",
        f"failures       {report.sample_failures}",
    ]
    for name, rows in report.bins.items():
        lines.append("")
        lines.append(f"{name:<22} {'planned':>8} {'written':>9}")
        lines.extend(f"  {label:<20} {p:>8} {a:>9}" for label, p, a in rows)
    lines.append("")
    if report.ok:
        lines.append("integrity: OK")
    else:
        lines.append(f"integrity: FAILED ({len(report.problems)} problem(s))")
        lines.extend(f"  - {p}" for p in report.problems)
    return "\n".join(lines)


__all__ = ["InspectReport", "format_report", "inspect_dataset"]
