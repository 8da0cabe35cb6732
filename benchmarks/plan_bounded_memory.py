"""Planning memory does not grow with the plan: `write_plan` at 10**6 .. 10**8 rows, each in a fresh process.

Issue 12 (bounded inputs): 10**8 rows used to take > 60 s and 2.4 GB (the shuffled code arrays,
~12 bytes per row, plus ~25 KB of Parquet writer metadata per one-shard row group); planning now
streams its bin codes (a keyed permutation per stream) and writes row groups of whole shards, so
peak RSS should be flat across sizes. Run (never as a test; 10**8 takes minutes on 2 cores):

    nice -n 15 .venv/bin/python benchmarks/plan_bounded_memory.py [--rows 1000000 10000000 100000000]

Per size: wall and CPU seconds, peak RSS of the planning process (its own getrusage max RSS),
its RSS before planning (interpreter + numpy/pyarrow/torch), the up-front estimate
(`facegen.manifest.plan.estimate_plan_memory`), the file size and the number of row groups.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import torch  # noqa: F401  (normal-pose sampling imports it: count it in the baseline)
import pyarrow.parquet as pq
from facegen.manifest import validate_manifest, write_plan
from facegen.manifest.plan import estimate_plan_memory

rows, identities = int(sys.argv[1]), int(sys.argv[2])
data = {
    "version": 1, "seed": 1,
    "output": {"samples_per_shard": 1000},
    "identities": {"random": {"count": identities, "max_similarity": 0.3}},
    "images_per_identity": rows // identities,
    "targets": {
        "emotion": "uniform",
        "pose": {
            "yaw": {"uniform": [-45, 45], "bins": 9},
            "pitch": {"normal": {"mean": 0, "std": 10, "clip": [-30, 30]}, "bins": 12},
            "roll": {"histogram": {"edges": [-20, -5, 5, 20], "weights": [1, 4, 1]}},
        },
        "controls": {"id": 0.1, "id+lmk": 0.2, "id+emo": 0.2, "id+lmk+emo": 0.5},
    },
    "limits": {"max_images": max(rows, 1)},
}
m = validate_manifest(data, source="<benchmark>", lines={}, base_dir=Path.cwd())
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
estimate = estimate_plan_memory(m, identities) / 2**20
with tempfile.TemporaryDirectory() as tmp:
    t0, c0 = time.perf_counter(), time.process_time()
    info = write_plan(m, tmp)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = info.plan_path.stat().st_size
    groups = pq.ParquetFile(info.plan_path).metadata.num_row_groups
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": info.num_rows, "wall": wall, "cpu": cpu, "baseline_mib": baseline, "peak_mib": peak,
                  "estimate_mib": estimate, "size_mib": size / 2**20, "row_groups": groups}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--identities", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{'rows':>13} {'wall s':>8} {'CPU s':>8} {'rows/s CPU':>12} {'peak RSS':>10} {'before':>8} {'plan own':>9} {'estimate':>9} {'plan.parquet':>13} {'groups':>7}")
    for rows in args.rows:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(args.identities)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(proc.returncode)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = r["peak_mib"]  # the child's own max RSS (Linux: KiB)
        print(
            f"{r['rows']:>13,} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rows'] / r['cpu']:>12,.0f} {peak:>7,.0f} MiB"
            f" {r['baseline_mib']:>5,.0f} MiB {peak - r['baseline_mib']:>6,.0f} MiB {r['estimate_mib']:>6,.0f} MiB"
            f" {r['size_mib']:>9,.0f} MiB {r['row_groups']:>7,}   (process total {time.perf_counter() - t0:.0f} s)"
        )


if __name__ == "__main__":
    main()
