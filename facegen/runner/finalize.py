"""After the shards: ``labels.parquet``, ``rejects.parquet``, ``failures.parquet`` and ``summary.json``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facegen.io.fs import Location
from facegen.io.shards import ShardPaths
from facegen.runner.aggregate import ShardLedger

LABELS_NAME = "labels.parquet"
REJECTS_NAME = "rejects.parquet"
FAILURES_NAME = "failures.parquet"
SUMMARY_NAME = "summary.json"
FAILURES_SCHEMA = pa.schema([pa.field("shard", pa.int32()), pa.field("key", pa.string()), pa.field("error", pa.string())])


def _read_shard(root: Location, rel: str) -> pa.Table:
    """One shard Parquet. Local files by pyarrow's own reader (~5x less CPU than ``read_table`` on an
    fsspec file), on this thread: a shard's few rows are not worth the thread pool (0.39 vs 0.52 ms of
    CPU per one-row file of 39 columns)."""
    if root.is_local:
        return pq.ParquetFile(root.path(rel)).read(use_threads=False)
    with root.open(rel, "rb") as f:
        return pq.ParquetFile(f).read(use_threads=False)


def collect_labels(root: Location, shards: list[int], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate the shard Parquets (in shard order) into one table (:func:`_read_shard`); the per-shard
    tables are merged every 4096 shards, so a million one-row shards never hold a million table objects."""
    tables: list[pa.Table] = []
    batch: list[pa.Table] = []
    for shard in sorted(shards):
        batch.append(_read_shard(root, ShardPaths(shard).parquet))
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


class _NotInPlanOrder(Exception):
    """Shard rows concatenated in shard order are not in plan order (rounds), or schemas differ."""


#: labels.parquet columns summary.json is computed from (verification and per-bin counts).
SUMMARY_COLUMNS = ("key", "index", "shard", "round", "accepted", "reject_reason", "target_emotion", "measured_emotion",
                   "controls", "target_yaw", "target_pitch", "target_roll", "measured_yaw", "measured_pitch", "measured_roll")

#: Rows per row group of a streamed labels.parquet (the shards' rows are buffered until then).
LABELS_CHUNK_ROWS = 65_536


def _order_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    if "index" not in table.column_names:
        return None
    index = np.asarray(table.column("index").to_numpy(zero_copy_only=False), np.int64)
    if "round" in table.column_names:
        rnd = np.asarray(table.column("round").to_numpy(zero_copy_only=False), np.int64)
    else:
        rnd = np.zeros(len(index), np.int64)
    return index, rnd


def _non_decreasing(index: np.ndarray, rnd: np.ndarray) -> bool:
    """(index, round) pairs in lexicographic non-decreasing order (a stable sort leaves them as they are)."""
    di, dr = np.diff(index), np.diff(rnd)
    return bool(np.all((di > 0) | ((di == 0) & (dr >= 0))))


def _stream_labels(root: Location, shards: Iterable[int], rel: str, chunk_rows: int) -> int:
    """Write the shards' rows to `rel` as they are read, holding at most `chunk_rows` rows (+ one shard):
    possible when the rows, concatenated in shard order, already are in plan order with one schema (one
    round: the plan's shards are contiguous runs of plan rows). Raises :class:`_NotInPlanOrder` otherwise
    (the temporary file is removed, nothing is written)."""
    rows = 0
    last: tuple[int, int] | None = None
    schema: pa.Schema | None = None
    pending: list[pa.Table] = []  # shard tables, merged into one every 1,024 (concatenating many tiny tables is slow)
    merged: list[pa.Table] = []
    pending_rows = 0

    def merge() -> None:
        nonlocal pending
        if pending:
            merged.append(pa.concat_tables(pending).combine_chunks())
            pending = []

    def flush(writer: pq.ParquetWriter) -> None:
        nonlocal last, rows, merged, pending_rows
        merge()
        chunk = pa.concat_tables(merged).combine_chunks()
        merged = []
        keys = _order_keys(chunk)
        if keys is not None:  # in plan order within the chunk and after the previous one
            index, rnd = keys
            if (last is not None and (int(index[0]), int(rnd[0])) < last) or not _non_decreasing(index, rnd):
                raise _NotInPlanOrder("shards are out of plan order")
            last = (int(index[-1]), int(rnd[-1]))
        writer.write_table(chunk, row_group_size=max(1, pending_rows))
        rows += pending_rows
        pending_rows = 0

    with root.open_atomic(rel) as f:
        writer: pq.ParquetWriter | None = None
        try:
            for shard in shards:
                table = _read_shard(root, ShardPaths(shard).parquet)
                if schema is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(f, schema)
                elif not table.schema.equals(schema):
                    raise _NotInPlanOrder(f"shard {shard} has another schema")
                if table.num_rows:
                    pending.append(table)
                    pending_rows += table.num_rows
                    if len(pending) >= 1024:
                        merge()
                if pending_rows >= chunk_rows:
                    flush(writer)  # type: ignore[arg-type]
            if writer is None:
                raise _NotInPlanOrder("no shard")
            if pending_rows:
                flush(writer)
        finally:
            if writer is not None:
                writer.close()
    return rows


def write_labels(root: Location, done: Iterable[int], schema: pa.Schema | None = None, *,
                 chunk_rows: int = LABELS_CHUNK_ROWS) -> int:
    """labels.parquet: every finished shard's rows in plan order (index, then round); returns its rows.

    Streamed with bounded memory when the shards, read in shard order, are already in plan order (a run
    without regeneration rounds; checked row by row, so the file is the same either way). Otherwise
    (rounds interleave with the plan) the rows are collected and sorted in memory, as before."""
    shards = sorted(done)
    try:
        return _stream_labels(root, shards, LABELS_NAME, chunk_rows)
    except _NotInPlanOrder:
        table = _in_plan_order(collect_labels(root, shards, schema))
        root.write_parquet_atomic(LABELS_NAME, table)
        return table.num_rows


def read_labels(root: Location, columns: Sequence[str] | None = None) -> pa.Table:
    """The `columns` of labels.parquet that it has (None: every column that is not a list: what the
    summaries and reports read, without the wide probability vectors)."""
    with root.open(LABELS_NAME, "rb") as f:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        if columns is None:
            wanted = [fld.name for fld in pf.schema_arrow if not pa.types.is_list(fld.type)
                      and not pa.types.is_fixed_size_list(fld.type) and not pa.types.is_large_list(fld.type)]
        else:
            wanted = [c for c in columns if c in names]
        return pf.read(columns=wanted)


def _shards_with(done: Mapping[int, Any], what: str) -> list[int]:
    """Shards of `done` whose ``rejected`` count is non-zero (what="rejected") or that list failed samples
    (what="failed"), ascending; from the ledger's arrays without a per-shard object."""
    if isinstance(done, ShardLedger):
        return done.rejected_shards() if what == "rejected" else [s for s, _ in done.failed_items()]
    return sorted(s for s, st in done.items() if getattr(st, what))


def collect_rejects(root: Location, done: Mapping[int, Any], schema: pa.Schema) -> pa.Table:
    """Every finished shard's rejected rows (``NNNNNN_rejects.parquet``), in plan order."""
    tables = []
    for shard in _shards_with(done, "rejected"):
        with root.open(ShardPaths(shard).rejects, "rb") as f:
            tables.append(pq.read_table(f))
    table = pa.concat_tables(tables, promote_options="default") if tables else schema.empty_table()
    return _in_plan_order(table)


def write_rejects(root: Location, done: Mapping[int, Any], schema: pa.Schema) -> pa.Table:
    table = collect_rejects(root, done, schema)
    root.write_parquet_atomic(REJECTS_NAME, table)
    return table


def write_failures(root: Location, done: Mapping[int, Any], failed_shards: dict[int, str]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for shard in _shards_with(done, "failed"):
        rows.extend({"shard": shard, "key": f["key"], "error": f["error"]} for f in done[shard].failed)
    rows.extend({"shard": shard, "key": None, "error": f"shard failed: {err}"} for shard, err in sorted(failed_shards.items()))
    table = pa.Table.from_pylist(rows, schema=FAILURES_SCHEMA)
    root.write_parquet_atomic(FAILURES_NAME, table)
    return table


def write_summary(root: Location, summary: dict[str, Any]) -> None:
    root.write_bytes_atomic(SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=False, default=str).encode())
