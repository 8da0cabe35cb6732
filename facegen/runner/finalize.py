"""After the shards: ``labels.parquet``, ``rejects.parquet``, ``failures.parquet`` and ``summary.json``."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from facegen.io.fs import Location
from facegen.io.shards import ShardPaths, ShardStats

LABELS_NAME = "labels.parquet"
REJECTS_NAME = "rejects.parquet"
FAILURES_NAME = "failures.parquet"
SUMMARY_NAME = "summary.json"
FAILURES_SCHEMA = pa.schema([pa.field("shard", pa.int32()), pa.field("key", pa.string()), pa.field("error", pa.string())])


def collect_labels(root: Location, shards: list[int], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate the shard Parquets (in shard order) into one table. Local files are read by pyarrow's
    own reader (~5x less CPU than ``read_table`` on an fsspec file), and the per-shard tables are merged
    every 4096 shards, so a million one-row shards never hold a million table objects at once."""
    tables: list[pa.Table] = []
    batch: list[pa.Table] = []
    for shard in sorted(shards):
        rel = ShardPaths(shard).parquet
        if root.is_local:
            batch.append(pq.ParquetFile(root.path(rel)).read())
        else:
            with root.open(rel, "rb") as f:
                batch.append(pq.ParquetFile(f).read())
        if len(batch) >= 4096:
            tables.append(pa.concat_tables(batch, promote_options="default").combine_chunks())
            batch = []
    tables.extend(batch)
    if not tables:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def _in_plan_order(table: pa.Table) -> pa.Table:
    """Rows sorted by plan index, then round (keys ``000000042``, ``000000042_r01`` sort the same way)."""
    order = [(c, "ascending") for c in ("index", "round") if c in table.column_names]
    return table.sort_by(order) if order and table.num_rows else table


def write_labels(root: Location, done: dict[int, ShardStats], schema: pa.Schema | None = None) -> pa.Table:
    table = _in_plan_order(collect_labels(root, list(done), schema))
    root.write_parquet_atomic(LABELS_NAME, table)
    return table


def collect_rejects(root: Location, done: dict[int, ShardStats], schema: pa.Schema) -> pa.Table:
    """Every finished shard's rejected rows (``NNNNNN_rejects.parquet``), in plan order."""
    tables = []
    for shard in sorted(done):
        if done[shard].rejected:
            with root.open(ShardPaths(shard).rejects, "rb") as f:
                tables.append(pq.read_table(f))
    table = pa.concat_tables(tables, promote_options="default") if tables else schema.empty_table()
    return _in_plan_order(table)


def write_rejects(root: Location, done: dict[int, ShardStats], schema: pa.Schema) -> pa.Table:
    table = collect_rejects(root, done, schema)
    root.write_parquet_atomic(REJECTS_NAME, table)
    return table


def write_failures(root: Location, done: dict[int, ShardStats], failed_shards: dict[int, str]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for shard in sorted(done):
        rows.extend({"shard": shard, "key": f["key"], "error": f["error"]} for f in done[shard].failed)
    rows.extend({"shard": shard, "key": None, "error": f"shard failed: {err}"} for shard, err in sorted(failed_shards.items()))
    table = pa.Table.from_pylist(rows, schema=FAILURES_SCHEMA)
    root.write_parquet_atomic(FAILURES_NAME, table)
    return table


def write_summary(root: Location, summary: dict[str, Any]) -> None:
    root.write_bytes_atomic(SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=False, default=str).encode())
