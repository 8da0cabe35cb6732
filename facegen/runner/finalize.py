"""After the shards: ``labels.parquet``, ``failures.parquet`` and ``summary.json`` of a dataset."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from facegen.io.fs import Location
from facegen.io.shards import ShardPaths, ShardStats
from facegen.labels import CONTROL_SETS, EMOTION_NAMES

LABELS_NAME = "labels.parquet"
FAILURES_NAME = "failures.parquet"
SUMMARY_NAME = "summary.json"
FAILURES_SCHEMA = pa.schema([pa.field("shard", pa.int32()), pa.field("key", pa.string()), pa.field("error", pa.string())])


def collect_labels(root: Location, shards: list[int], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate the shard Parquets (in shard order) into one table."""
    tables = []
    for shard in sorted(shards):
        with root.open(ShardPaths(shard).parquet, "rb") as f:
            tables.append(pq.read_table(f))
    if not tables:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def write_labels(root: Location, done: dict[int, ShardStats], schema: pa.Schema | None = None) -> pa.Table:
    table = collect_labels(root, list(done), schema)
    root.write_parquet_atomic(LABELS_NAME, table)
    return table


def write_failures(root: Location, done: dict[int, ShardStats], failed_shards: dict[int, str]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for shard in sorted(done):
        rows.extend({"shard": shard, "key": f["key"], "error": f["error"]} for f in done[shard].failed)
    rows.extend({"shard": shard, "key": None, "error": f"shard failed: {err}"} for shard, err in sorted(failed_shards.items()))
    table = pa.Table.from_pylist(rows, schema=FAILURES_SCHEMA)
    root.write_parquet_atomic(FAILURES_NAME, table)
    return table


def distribution_summary(labels: pa.Table, plan: pa.Table) -> dict[str, Any]:
    """Target counts vs the counts of images written with that *planned* label, per emotion class and control
    set. Nothing here is measured (`facegen verify` measures), hence the key `written_planned_not_measured`."""

    def counts(table: pa.Table, column: str, names: tuple[str, ...], by_index: bool) -> dict[str, int]:
        if column not in table.column_names:
            return {}
        c = Counter(table.column(column).to_pylist())
        return {name: int(c.get(i if by_index else name, 0)) for i, name in enumerate(names)}

    return {
        "emotion": {
            "target": counts(plan, "emotion", EMOTION_NAMES, True),
            "written_planned_not_measured": counts(labels, "emotion", EMOTION_NAMES, True),
        },
        "controls": {
            "target": counts(plan, "controls", CONTROL_SETS, False),
            "written_planned_not_measured": counts(labels, "controls", CONTROL_SETS, False),
        },
    }


def write_summary(root: Location, summary: dict[str, Any]) -> None:
    root.write_bytes_atomic(SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=False, default=str).encode())
