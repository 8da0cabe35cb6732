"""Storage for datasets: fsspec locations (local paths or URLs such as ``s3://``), shard files
(WebDataset tar + Parquet labels + stats done-marker), and the provenance lock file."""

from facegen.io.fs import Location
from facegen.io.samples import Sample, SampleFailure, check_key
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
    "Location",
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
