"""Shard files: ``shards/NNNNNN.tar`` + ``NNNNNN.parquet`` (+ ``NNNNNN_rejects.parquet`` when samples
were rejected), then ``NNNNNN_stats.json`` LAST.

The stats file is the done-marker: a shard counts as finished only when its stats file exists, carries
the run's fingerprint and its tar/parquet sizes match; resume (``completed_shards(..., verify=True)``)
also re-hashes both files and checks the row count, so a shard damaged after writing is redone. Tar and Parquet are written under temporary
names and renamed into place, so a crash leaves only temporaries (removed on resume) or a complete
shard without stats (redone from scratch).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from facegen.io.fs import TEMP_MARK, Location, temporary_name
from facegen.io.samples import RejectedSample, Sample, SampleFailure, check_key

SHARDS_DIR = "shards"
#: Fixed tar member mtime (2000-01-01) so the same samples give byte-identical tars.
TAR_MTIME = 946684800.0
#: Columns every shard Parquet has even when the caller gives no schema.
BASE_LABEL_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("shard", pa.int32())])


@dataclass(frozen=True)
class ShardPaths:
    """Relative paths (under the dataset root) of one shard's files."""

    shard: int

    @property
    def stem(self) -> str:
        return f"{SHARDS_DIR}/{self.shard:06d}"

    @property
    def tar(self) -> str:
        return self.stem + ".tar"

    @property
    def parquet(self) -> str:
        return self.stem + ".parquet"

    @property
    def stats(self) -> str:
        return self.stem + "_stats.json"

    @property
    def rejects(self) -> str:
        """Label rows of the shard's rejected samples (written only when there are some)."""
        return self.stem + "_rejects.parquet"


@dataclass
class ShardStats:
    """Content of ``NNNNNN_stats.json``."""

    shard: int
    count: int  # samples written (== tar samples == parquet rows)
    failures: int  # samples recorded as failed
    seconds: float  # wall time of producing + writing the shard
    fingerprint: str  # run identity (manifest + model + code format); resume only trusts a match
    tar_sha256: str
    tar_bytes: int
    parquet_sha256: str
    parquet_bytes: int
    first_key: str | None = None
    last_key: str | None = None
    failed: list[dict[str, str]] = field(default_factory=list)  # [{"key", "error"}]
    host: str = ""
    pid: int = 0
    finished_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # caller provenance: model/manifest hashes, ...
    rejected: int = 0  # samples made but not kept (RejectedSample): rows in NNNNNN_rejects.parquet
    rejects_sha256: str = ""
    rejects_bytes: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ShardStats":
        raw = json.loads(data)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


class HashingStream:
    """File-like that hashes and counts every byte on its way to or from the real file (the tar sha256
    of a shard's stats: computed while writing, checked while reading)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.bytes = 0

    def _count(self, data: bytes) -> bytes:
        self.sha.update(data)
        self.bytes += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.raw.write(self._count(data))
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._count(self.raw.read(size))

    def flush(self) -> None:
        self.raw.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def remove_shard(root: Location, shard: int) -> None:
    """Delete a shard's files, done-marker first (so a half-deleted shard is never 'done')."""
    paths = ShardPaths(shard)
    for rel in (paths.stats, paths.tar, paths.parquet, paths.rejects):
        root.remove(rel)


def write_shard(
    root: Location,
    shard: int,
    samples: Iterable[Sample | SampleFailure | RejectedSample],
    *,
    fingerprint: str,
    label_schema: pa.Schema | None = None,
    extra: dict[str, Any] | None = None,
) -> ShardStats:
    """Consume `samples` into shard `shard` under `root`; returns the stats written last.

    Any exception (from the sample iterator or the storage) removes this attempt's temporaries and
    propagates: the shard then has no stats and will be redone. Keys must be unique within the shard.
    :class:`RejectedSample` rows go to ``NNNNNN_rejects.parquet`` (same schema), renamed into place
    before the stats like the tar and Parquet.
    """
    started = time.perf_counter()
    paths = ShardPaths(shard)
    root.makedirs(SHARDS_DIR)
    remove_shard(root, shard)
    tmp_tar = temporary_name(paths.tar)
    tmp_parquet = temporary_name(paths.parquet)
    tmp_rejects = temporary_name(paths.rejects)
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    try:
        with root.open(tmp_tar, "wb") as raw:
            hashing = HashingStream(raw)
            tar = TarSampleWriter(hashing)
            try:
                _write_samples(tar, samples, shard, rows, failed, rejected)
            except BaseException:
                tar.abandon()
                raise
            tar.close()
        tar_sha, tar_bytes = hashing.sha.hexdigest(), hashing.bytes

        schema = label_schema if label_schema is not None else _infer_schema(rows)
        table = pa.Table.from_pylist(rows, schema=schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        parquet_data = buffer.getvalue()
        with root.open(tmp_parquet, "wb") as f:
            f.write(parquet_data)
        rejects_data = b""
        if rejected:
            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rejected, schema=schema if label_schema is not None else _infer_schema(rejected)), buffer)
            rejects_data = buffer.getvalue()
            with root.open(tmp_rejects, "wb") as f:
                f.write(rejects_data)

        root.rename(tmp_tar, paths.tar)
        root.rename(tmp_parquet, paths.parquet)
        if rejected:
            root.rename(tmp_rejects, paths.rejects)
        stats = ShardStats(
            shard=shard,
            count=len(rows),
            failures=len(failed),
            seconds=time.perf_counter() - started,
            fingerprint=fingerprint,
            tar_sha256=tar_sha,
            tar_bytes=tar_bytes,
            parquet_sha256=hashlib.sha256(parquet_data).hexdigest(),
            parquet_bytes=len(parquet_data),
            first_key=rows[0]["key"] if rows else None,
            last_key=rows[-1]["key"] if rows else None,
            failed=failed,
            host=socket.gethostname(),
            pid=os.getpid(),
            finished_at=time.time(),
            extra=dict(extra or {}),
            rejected=len(rejected),
            rejects_sha256=hashlib.sha256(rejects_data).hexdigest() if rejected else "",
            rejects_bytes=len(rejects_data),
        )
        root.write_bytes_atomic(paths.stats, stats.to_json())
        return stats
    except BaseException:
        root.remove(tmp_tar)
        root.remove(tmp_parquet)
        root.remove(tmp_rejects)
        raise


class TarSampleWriter:
    """Streams samples into a WebDataset tar: members ``KEY.EXT`` in sorted extension order (as
    ``webdataset.TarWriter`` orders them), plain USTAR headers with fixed mtime/owner/mode so equal samples
    give byte-identical tars. Stdlib ``tarfile``: writing a shard does not import torch (webdataset does),
    which keeps model-free actors light."""

    def __init__(self, fileobj: Any) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)

    def write(self, key: str, files: dict[str, bytes]) -> None:
        for ext in sorted(files):
            data = files[ext]
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ValueError(f"sample {key!r}: file {ext!r} is {type(data).__name__}, expected bytes")
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o444
            info.uname = info.gname = "bigdata"
            self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()

    def abandon(self) -> None:
        """Drop an unfinished tar without flushing its tail into the (soon closed) file."""
        self.tar.closed = True
        stream = getattr(self.tar, "fileobj", None)
        if stream is not None and hasattr(stream, "closed"):
            stream.closed = True


def _write_samples(
    tar: TarSampleWriter,
    samples: Iterable[Sample | SampleFailure | RejectedSample],
    shard: int,
    rows: list[dict[str, Any]],
    failed: list[dict[str, str]],
    rejected: list[dict[str, Any]],
) -> None:
    seen: set[str] = set()
    for item in samples:
        if item.key in seen:
            raise ValueError(f"duplicate sample key {item.key!r} in shard {shard}")
        seen.add(item.key)
        if isinstance(item, SampleFailure):
            failed.append({"key": item.key, "error": item.error})
            continue
        if isinstance(item, RejectedSample):
            row = {k: _plain(v) for k, v in item.label.items()}
            row.setdefault("key", item.key)
            row.setdefault("shard", shard)
            rejected.append(row)
            continue
        check_key(item.key)
        tar.write(item.key, item.files)
        row = {k: _plain(v) for k, v in item.label.items()}
        row.setdefault("key", item.key)
        row.setdefault("shard", shard)
        rows.append(row)


def prime_shard_writer() -> None:
    """Do once what the first shard write would otherwise pay for (pyarrow imports pandas the first time
    it builds a table from Python rows: ~0.2 s of CPU). Worker processes call it while starting, so the
    cost lands in start-up and not in their first shard, where 16 actors starting together paid it at
    once (issue 13's benchmark: every actor's first 1-s shard took 2.6 s on 2 cores)."""
    _infer_schema([{"key": "k", "shard": 0}])


def _infer_schema(rows: list[dict[str, Any]]) -> pa.Schema:
    if not rows:
        return BASE_LABEL_SCHEMA
    return pa.Table.from_pylist(rows).schema


def read_shard_stats(root: Location, shard: int) -> ShardStats | None:
    """The shard's stats, or None if absent or unreadable."""
    rel = ShardPaths(shard).stats
    try:
        return ShardStats.from_json(root.read_bytes(rel))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def is_complete(root: Location, stats: ShardStats | None, fingerprint: str) -> bool:
    """True when `stats` marks a finished shard of this run whose files are all present and sized."""
    if stats is None or stats.fingerprint != fingerprint:
        return False
    paths = ShardPaths(stats.shard)
    try:
        if stats.rejected and root.size(paths.rejects) != stats.rejects_bytes:
            return False
        return root.size(paths.tar) == stats.tar_bytes and root.size(paths.parquet) == stats.parquet_bytes
    except FileNotFoundError:
        return False


def file_sha256(root: Location, rel: str, chunk: int = 1 << 20) -> tuple[str, int]:
    """(sha256 hex, bytes) of the file `rel` under `root`, read once in chunks."""
    sha, size = hashlib.sha256(), 0
    with root.open(rel, "rb") as f:
        while True:
            data = f.read(chunk)
            if not data:
                break
            sha.update(data)
            size += len(data)
    return sha.hexdigest(), size


def verify_shard(root: Location, stats: ShardStats) -> str | None:
    """None when the shard's tar and Parquet are exactly what its stats recorded (sha256 of both files,
    sizes, and the Parquet's row count == ``count``); else what differs, one short phrase."""
    paths = ShardPaths(stats.shard)
    files = [(paths.tar, stats.tar_sha256, stats.tar_bytes), (paths.parquet, stats.parquet_sha256, stats.parquet_bytes)]
    if stats.rejected:
        files.append((paths.rejects, stats.rejects_sha256, stats.rejects_bytes))
    try:
        for rel, want_sha, want_bytes in files:
            sha, size = file_sha256(root, rel)
            if size != want_bytes or sha != want_sha:
                return f"{rel.rsplit('/', 1)[-1]} sha256 differs from its stats (changed after writing)"
        with root.open(paths.parquet, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
    except FileNotFoundError as exc:
        return f"missing file ({exc.filename or exc})"
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if rows != stats.count:
        return f"parquet has {rows} rows, stats say {stats.count}"
    return None


def marked_shards(root: Location) -> list[int]:
    """Shards that have a done-marker, from one listing of ``shards/``: names only, no marker is opened
    (what the driver does at resume; the markers are read and checked by :func:`check_shard`)."""
    suffix = "_stats.json"
    found = []
    for name in root.iter_names(SHARDS_DIR):
        if name.endswith(suffix) and TEMP_MARK not in name:
            try:
                found.append(int(name[: -len(suffix)]))
            except ValueError:
                continue
    found.sort()
    return found


def check_shard(root: Location, shard: int, fingerprint: str, verify: bool = True) -> tuple[ShardStats | None, str | None]:
    """One marked shard: (stats, None) when finished by the run `fingerprint` and intact (with `verify`:
    tar + Parquet hash to its stats); (None, what differs) when it is a damaged shard of that run;
    (None, None) when the marker is unreadable or of another run (not trusted, not reported)."""
    stats = read_shard_stats(root, shard)
    if stats is None or stats.fingerprint != fingerprint:
        return None, None
    if not is_complete(root, stats, fingerprint):
        return None, "tar or parquet missing or of the wrong size"
    if verify:
        problem = verify_shard(root, stats)
        if problem is not None:
            return None, problem
    return stats, None


def completed_shards(
    root: Location, fingerprint: str, *, verify: bool = False, damaged: dict[int, str] | None = None
) -> dict[int, ShardStats]:
    """Finished shards of the run `fingerprint` found under `root` (shard -> stats).

    With `verify`, every candidate's tar and Parquet are hashed against its stats (what resume does:
    a byte flipped after writing must not be trusted); shards that fail are left out and, when
    `damaged` is given, recorded there (shard -> what differs). Files are hashed on a few threads."""
    candidates: dict[int, ShardStats] = {}
    for name in root.list(SHARDS_DIR):
        if not name.endswith("_stats.json") or TEMP_MARK in name:
            continue
        try:
            shard = int(name[: -len("_stats.json")])
        except ValueError:
            continue
        stats = read_shard_stats(root, shard)
        if is_complete(root, stats, fingerprint):
            candidates[shard] = stats  # type: ignore[assignment]
        elif stats is not None and stats.fingerprint == fingerprint and damaged is not None:
            damaged[shard] = "tar or parquet missing or of the wrong size"
    if not verify or not candidates:
        return candidates
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(candidates))) as pool:
        problems = dict(zip(candidates, pool.map(lambda st: verify_shard(root, st), candidates.values())))
    done: dict[int, ShardStats] = {}
    for shard, stats in candidates.items():
        if problems[shard] is None:
            done[shard] = stats
        elif damaged is not None:
            damaged[shard] = problems[shard]  # type: ignore[assignment]
    return done


def remove_temporaries(root: Location, shard: int | None = None) -> int:
    """Delete leftovers of interrupted writes (``*.tmp-*``, of one shard or all); returns how many."""
    removed = 0
    prefix = "" if shard is None else f"{shard:06d}"
    for name in list(n for n in root.iter_names(SHARDS_DIR) if TEMP_MARK in n):  # collected first: removal edits the folder
        if TEMP_MARK in name and name.startswith(prefix):
            root.remove(f"{SHARDS_DIR}/{name}")
            removed += 1
    return removed


def all_shard_stats(root: Location) -> dict[int, ShardStats]:
    """Every readable stats file under `root` regardless of fingerprint (for inspect/finalize)."""
    found: dict[int, ShardStats] = {}
    for name in root.list(SHARDS_DIR):
        if name.endswith("_stats.json") and TEMP_MARK not in name:
            try:
                shard = int(name[: -len("_stats.json")])
            except ValueError:
                continue
            stats = read_shard_stats(root, shard)
            if stats is not None:
                found[shard] = stats
    return found
