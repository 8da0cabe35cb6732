"""Re-measure stored synthface study datasets with other estimator weights, side by side. Not a test.

The study (`benchmarks/synthface_study.py`) keeps each row's generated dataset in its `--work` folder.
This script runs `facegen verify` (synthface backends) and the study's row metrics on those same images
once per estimator (`$FACEGEN_SYNTHFACE_ESTIMATOR`, one subprocess each, so no cached measurement
crosses over) and prints the metrics next to each other: what changes is the instrument, not the model.

    .venv/bin/python benchmarks/synthface_remeasure.py --work runs/synthface/round5b/study \
        --rows t1_joint t1_base_only --estimator shipped --estimator runs/synthface/estimator3/estimator.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

KEYS = [("yaw_rmse", "yaw RMSE", 1), ("pitch_rmse", "pitch RMSE", 1), ("roll_rmse", "roll RMSE", 1),
        ("expression_rmse", "expr. RMSE", 3), ("emotion_accuracy", "emotion acc. (emo on)", None),
        ("emotion_accuracy_emo_off", "emotion acc. (emo off)", None), ("identity_rank1", "ID rank-1", None)]


def measure_rows(work: Path, data: Path, rows: list[str]) -> dict:
    """Row metrics of stored datasets, with whatever estimator $FACEGEN_SYNTHFACE_ESTIMATOR selects."""
    import pyarrow.parquet as pq
    import torch

    from facegen.analysis.verify import VerifyConfig, run_verify
    from synthface_study import heldout_assets, row_metrics

    torch.set_num_threads(int(os.environ.get("REMEASURE_THREADS", "2")))
    scratch = work / "remeasure_assets"
    scratch.mkdir(exist_ok=True)
    _, _, bank_truth = heldout_assets(data, scratch)
    out = {}
    for name in rows:
        d = work / name
        result = run_verify(VerifyConfig(dataset=str(d), landmark_backend="synthface", identity_backend="synthface",
                                         emotion_backend="synthface"), progress=False)
        run = {"dir": d, "report": result.report, "table": pq.read_table(result.table_path), "generate_s": float("nan")}
        metrics = row_metrics(run, bank_truth)
        out[name] = {k: metrics[k] for k, _, _ in KEYS} | {"samples": metrics["samples"],
                                                          "per_control": metrics["per_control"]}
    return out


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _label(est: str) -> str:
    return "shipped" if est == "shipped" else Path(est).parent.name


def render_markdown(args, results: dict) -> str:
    lines = [
        f"# Stored study images measured again: {args.work}",
        "",
        "Written by `benchmarks/synthface_remeasure.py`: the same generated images (no regeneration), measured by",
        "`facegen verify` and the study's row metrics once per estimator. Columns: estimator weights (`shipped` =",
        "`facegen/synthface/data/estimator.safetensors` at the time of the run).",
        "",
        *([args.note, ""] if args.note else []),
    ]
    for row in args.rows:
        lines += [f"## {row} ({results[args.estimator[0]][row]['samples']} images)", "",
                  "| metric | " + " | ".join(_label(e) for e in args.estimator) + " |",
                  "|---|" + "---|" * len(args.estimator)]
        for key, label, digits in KEYS:
            cells = [f"{100 * results[e][row][key]:.1f}%" if digits is None else f"{results[e][row][key]:.{digits}f}"
                     for e in args.estimator]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a study --work folder (holds t1_*/ datasets)")
    parser.add_argument("--data", type=Path, default=ROOT / "runs" / "synthface" / "data", help="holds heldout/")
    parser.add_argument("--rows", nargs="+", default=["t1_base_only", "t1_joint"])
    parser.add_argument("--estimator", action="append", required=True,
                        help="'shipped' or an estimator.safetensors path (repeat: one column each)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--md", type=Path, help="also write a markdown table here")
    parser.add_argument("--note", default="", help="a paragraph under the markdown's title (which weights are which)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_rows(args.work.resolve(), args.data.resolve(), args.rows), default=float))
        return
    missing = [r for r in args.rows if not (args.work / r / "labels.parquet").is_file()]
    if missing:
        _fail(f"{args.work}: no stored dataset for {', '.join(missing)}; run the study first")
    results = {}
    for est in args.estimator:
        env = dict(os.environ)
        env.pop("FACEGEN_SYNTHFACE_ESTIMATOR", None)
        if est != "shipped":
            if not Path(est).is_file():
                _fail(f"--estimator {est}: no such file")
            env["FACEGEN_SYNTHFACE_ESTIMATOR"] = str(Path(est).resolve())
        cmd = [sys.executable, __file__, "--child", "--work", str(args.work), "--data", str(args.data), "--rows",
               *args.rows, "--estimator", est]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            _fail(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"measuring with {est} failed")
        results[est] = json.loads(proc.stdout.strip().splitlines()[-1])
    for row in args.rows:
        print(f"\n{row} ({results[args.estimator[0]][row]['samples']} images)")
        print(f"{'metric':24s}" + "".join(f"{Path(e).parent.name if e != 'shipped' else 'shipped':>16s}"
                                          for e in args.estimator))
        for key, label, digits in KEYS:
            cells = []
            for e in args.estimator:
                v = results[e][row][key]
                cells.append(f"{100 * v:15.1f}%" if digits is None else f"{v:16.{digits}f}")
            print(f"{label:24s}" + "".join(cells))
    if args.md:
        args.md.write_text(render_markdown(args, results))
        print(f"wrote {args.md}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
