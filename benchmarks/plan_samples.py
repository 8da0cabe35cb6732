"""Plan 10 million rows with `write_plan` (streaming) and report rows/s and peak memory.

Target (issue 3): 10M rows in < 60 s and < 2 GiB on a 2-core CPU machine. Run:
    .venv/bin/python benchmarks/plan_samples.py [--rows 10000000]
Peak memory is the process's max RSS (resource.getrusage), which includes the Python/pyarrow/torch
baseline; the baseline before planning is printed alongside so the plan's own share is visible.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def _max_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--identities", type=int, default=10_000)
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import torch  # noqa: F401  (imported by normal-pose sampling; count it in the baseline)

    from facegen.manifest import validate_manifest, write_plan

    per_id = args.rows // args.identities
    data = {
        "version": 1,
        "seed": 1,
        "output": {"samples_per_shard": 1000},
        "identities": {"random": {"count": args.identities, "max_similarity": 0.3}},
        "images_per_identity": per_id,
        "targets": {
            "emotion": "uniform",
            "pose": {
                "yaw": {"uniform": [-45, 45], "bins": 9},
                "pitch": {"normal": {"mean": 0, "std": 10, "clip": [-30, 30]}, "bins": 12},
                "roll": {"histogram": {"edges": [-20, -5, 5, 20], "weights": [1, 4, 1]}},
            },
            "controls": {"id": 0.1, "id+lmk": 0.2, "id+emo": 0.2, "id+lmk+emo": 0.5},
        },
    }
    manifest = validate_manifest(data, source="<benchmark>", lines={}, base_dir=Path.cwd())
    baseline = _max_rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        info = write_plan(manifest, tmp)
        elapsed = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        size = info.plan_path.stat().st_size
        meta = pq.ParquetFile(info.plan_path).metadata
    peak = _max_rss_mib()
    print(f"rows            {info.num_rows:,} ({info.num_identities:,} identities x {per_id}, {info.num_shards:,} shards)")
    print(f"wall time       {elapsed:.1f} s   (target < 60 s: {elapsed / 60:.2f} of budget)")
    print(f"process CPU     {cpu:.1f} s   (wall/CPU {elapsed / cpu:.2f}: > 1 means the cores were shared)")
    print(f"throughput      {info.num_rows / elapsed:,.0f} rows/s wall, {info.num_rows / cpu:,.0f} rows/s of CPU")
    print(f"peak RSS        {peak:,.0f} MiB  (baseline before planning {baseline:,.0f} MiB; target < 2048 MiB: {peak / 2048:.2f} of budget)")
    print(f"plan.parquet    {size / 2**20:,.0f} MiB, {meta.num_row_groups:,} row groups")


if __name__ == "__main__":
    main()
