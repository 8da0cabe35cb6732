"""Storage for datasets: fsspec locations (local paths or URLs such as ``s3://``), the one atomic
writer (``Location.open_atomic`` and the helpers on it), shard files (WebDataset tar + Parquet labels +
stats done-marker), the one reader of those shard tars, and the provenance lock file."""

from facegen.io.fs import Location, normalize_url, write_bytes_atomic, write_parquet_atomic
from facegen.io.reader import IMAGE_EXTS, ShardReader, ShardScan, shard_tars
from facegen.io.samples import RejectedSample, Sample, SampleFailure, check_key
from facegen.io.shards import (
    ShardPaths,
    ShardStats,
    all_shard_stats,
    is_complete,
    remove_shard,
    completed_shards,
    read_shard_stats,
    remove_temporaries,
    write_shard,
)

__all__ = [
    "IMAGE_EXTS",
    "Location",
    "ShardReader",
    "ShardScan",
    "normalize_url",
    "shard_tars",
    "write_bytes_atomic",
    "write_parquet_atomic",
    "RejectedSample",
    "Sample",
    "SampleFailure",
    "check_key",
    "ShardPaths",
    "ShardStats",
    "all_shard_stats",
    "is_complete",
    "remove_shard",
    "completed_shards",
    "read_shard_stats",
    "remove_temporaries",
    "write_shard",
]
