"""``facegen inspect``: counts, per-bin table and an integrity check of a generated dataset."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from facegen.io.fs import TEMP_MARK, Location
from facegen.io.lock import LOCK_NAME, read_lock
from facegen.io.reader import ShardReader, image_ext
from facegen.io.shards import SHARDS_DIR, ShardPaths, all_shard_stats, file_sha256
from facegen.runner.rounds import coverage_problems
from facegen.report.bins import BinTable, compute_bins, format_bins
from facegen.report.columns import target_name

#: Plan columns inspect reads (targets under either name: ``target_yaw`` or ``yaw``).
PLAN_FIELDS = ("emotion", "controls", "yaw", "pitch", "roll")


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
    bins: BinTable = field(default_factory=BinTable)  # target / planned / measured-accepted per bin
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


def inspect_dataset(dataset: str, *, check_hashes: bool = True) -> InspectReport:
    """Read every shard and cross-check stats, tars, shard Parquets, labels.parquet and the plan."""
    root = Location(dataset)
    report = InspectReport(dataset=root.url)
    problems = report.problems
    if not root.exists(LOCK_NAME):
        problems.append(f"{LOCK_NAME} missing (not a finished facegen dataset?)")
    plan: pa.Table | None = None
    if root.exists("plan.parquet"):
        plan = _read_plan(root)
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
    if plan is not None:  # rounds of regeneration: KEY_rNN samples, rejected rows in rejects.parquet
        problems.extend(coverage_problems(plan.column("key").to_pylist(), all_keys, *_rejected_and_failed(root)))
        lock = read_lock(root) if root.exists(LOCK_NAME) else None
        report.bins = compute_bins(plan, labels, (lock or {}).get("manifest"))
    return report


def _rejected_and_failed(root: Location) -> tuple[list[str], list[str], int | None]:
    """Keys in rejects.parquet and failures.parquet, and summary.json's count of dropped plan rows."""
    keys: list[list[str]] = []
    for name in ("rejects.parquet", "failures.parquet"):
        found: list[str] = []
        if root.exists(name):
            with root.open(name, "rb") as f:
                found = [k for k in pq.read_table(f, columns=["key"]).column("key").to_pylist() if k is not None]
        keys.append(found)
    dropped = None
    if root.exists("summary.json"):
        try:
            dropped = json.loads(root.read_bytes("summary.json")).get("verification", {}).get("dropped")
        except ValueError:
            pass  # reported by _check_summary_and_reports
    return keys[0], keys[1], dropped


def _read_plan(root: Location) -> pa.Table:
    """plan.parquet's key, shard and target columns (whichever naming the dataset uses)."""
    with root.open("plan.parquet", "rb") as f:
        schema = pq.read_schema(f)
    names = ["key", "shard"] + [n for n in (target_name(schema.empty_table(), fld) for fld in PLAN_FIELDS) if n]
    with root.open("plan.parquet", "rb") as f:
        return pq.read_table(f, columns=names)


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
    lines.extend(format_bins(report.bins))
    lines.append("")
    if report.ok:
        lines.append("integrity: OK")
    else:
        lines.append(f"integrity: FAILED ({len(report.problems)} problem(s))")
        lines.extend(f"  - {p}" for p in report.problems)
    return "\n".join(lines)


__all__ = ["InspectReport", "format_report", "inspect_dataset"]
