"""`benchmarks/gpu_throughput.py --device cpu --tiny` runs end to end, so the GPU benchmark cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_throughput_runs_on_cpu_with_the_tiny_preset(tmp_path: Path):
    out = tmp_path / "rows.json"
    # ~15 s on an idle machine (mostly imports); the generous timeout is for a loaded shared one
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--device", "cpu", "--tiny", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for column in ("img/s", "ms/step", "VAE ms/img", "TFLOP/img", "MFU"):
        assert column in proc.stdout
    rows = json.loads(out.read_text())
    assert [(r["dtype"], r["batch"], r["guidance"]) for r in rows] == [("bf16", 2, "eq6"), ("bf16", 2, "intervals")]
    eq6, intervals = rows
    assert eq6["rows_per_img"] == 4 * eq6["steps"] and intervals["rows_per_img"] < eq6["rows_per_img"]
    assert all(r["img_s"] > 0 and r["step_ms"] > 0 and r["vae_ms_per_img"] > 0 for r in rows)
    assert 0 < intervals["tflop_per_img"] < eq6["tflop_per_img"]
    assert eq6["mfu"] is None  # no peak FLOP/s known for a CPU
