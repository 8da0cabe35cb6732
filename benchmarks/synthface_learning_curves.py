"""Issue 10's targets against training spent: the pixel-space synthface recipe's learning curves. Not a test.

Each point is a study row already measured (`benchmarks/results/synthface_pixel_*.json`, written by
`benchmarks/synthface_study.py`: held-out identities, dpmpp-sde, 25 steps, default guidance) placed at the
training it took to get there: the sum of the stage configs' steps along the recipe's chain up to that model
(`training/synthface/pixel/`) and, where the runs folder is present, the stages' measured wall time (the
sum of `step_time_s` in each stage's `metrics.csv`). Writes a markdown table and a plot:

    .venv/bin/python benchmarks/synthface_learning_curves.py --runs runs/synthface/pixel \
        --out benchmarks/results/synthface_learning_curves.md
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training" / "synthface" / "pixel"
RESULTS = ROOT / "benchmarks" / "results"

# The recipe in the order it runs; each model continues the one before it (pretrain-lmk and pretrain-emo
# run side by side on one core each, so only the longer of the two counts as wall time).
CHAIN = ["refiner", "base", "base2", ("pretrain_lmk", "pretrain_emo"), "joint", "joint2", "reward", "reward2",
         "reward3", "reward4", "reward5", "reward6", "reward7", "reward8"]

TARGETS = {"yaw_rmse": 5.0, "pitch_rmse": 5.0, "roll_rmse": 5.0, "emotion_accuracy": 0.80, "identity_rank1": 0.90}


@dataclass(frozen=True)
class Point:
    label: str
    result: str  # file in benchmarks/results
    row: str  # row of its Table 1
    last_stage: str  # the model's last stage in CHAIN


POINTS = [
    Point("round 2 base (controls untrained)", "synthface_pixel_r2.json", "base only (control modules untrained)", "base2"),
    Point("round 2 joint", "synthface_pixel_r2.json", "joint", "joint2"),
    Point("round 3 (shipped until round 8)", "synthface_pixel_r3.json", "joint", "reward3"),
    Point("round 4", "synthface_pixel_r4.json", "joint", "reward4"),
    Point("round 5", "synthface_pixel_r5.json", "joint", "reward5"),
    Point("round 7", "synthface_pixel_r7.json", "joint", "reward7"),
    Point("round 8", "synthface_pixel_r8.json", "joint", "reward8"),
]


def stage_steps(name: str) -> int:
    return int(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["steps"])


def stage_minutes(runs: Path | None, name: str) -> float | None:
    """Measured wall time of a stage's steps (metrics.csv), or None when the run is not here."""
    if runs is None or not (runs / name / "metrics.csv").is_file():
        return None
    with open(runs / name / "metrics.csv", newline="") as f:
        return sum(float(r["step_time_s"]) for r in csv.DictReader(f)) / 60


def chain_cost(runs: Path | None, last: str) -> tuple[int, float | None]:
    """(UNet-model training steps, measured minutes) from the start of the recipe through `last`."""
    steps, minutes = 0, 0.0
    for item in CHAIN:
        names = item if isinstance(item, tuple) else (item,)
        if "refiner" not in names:  # the refiner trains the decoder, not the UNet or its modules
            steps += max(stage_steps(n) for n in names)
        times = [stage_minutes(runs, n) for n in names]
        minutes = None if minutes is None or None in times else minutes + max(times)
        if last in names:
            return steps, minutes
    raise SystemExit(f"error: stage {last!r} is not in the recipe chain")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=None, help="the recipe's runs folder (for measured wall time)")
    ap.add_argument("--out", type=Path, default=RESULTS / "synthface_learning_curves.md")
    args = ap.parse_args(argv)
    rows = []
    for p in POINTS:
        path = RESULTS / p.result
        if not path.is_file():
            print(f"skipping {p.label}: {path.name} not measured", file=sys.stderr)
            continue
        data = json.loads(path.read_text())
        metrics = data["table1"][p.row]
        steps, minutes = chain_cost(args.runs, p.last_stage)
        rows.append((p, steps, minutes, metrics))
    lines = [
        "# synthface: issue 10's targets against training spent (pixel-space recipe)",
        "",
        "Written by `benchmarks/synthface_learning_curves.py` from the study rows in this folder (held-out",
        "identities, dpmpp-sde, 25 steps, default guidance; the row's image count is in its own file). Steps: UNet",
        "and control-module optimiser steps at batch 32 along the recipe's chain (`training/synthface/pixel/`;",
        "the decoder refiner's 1,500 steps and the renders and estimators are not counted). Minutes: the stages'",
        "measured step time on this 2-core box (`metrics.csv`); a stage that shared the CPU with other work reads",
        "longer than it would alone.",
        "",
        "| model | steps | train min | yaw / pitch / roll RMSE | emotion (emo on) | ID rank-1 (id / id+emo / id+lmk / id+lmk+emo) |",
        "|---|---:|---:|---|---:|---|",
    ]
    for p, steps, minutes, m in rows:
        per = m.get("per_control", {})
        ids = " / ".join(f"{100 * per[c]['identity_rank1']:.0f}" for c in ("id", "id+emo", "id+lmk", "id+lmk+emo") if c in per)
        lines.append(
            f"| {p.label} | {steps:,} | {'' if minutes is None else f'{minutes:.0f}'} | "
            f"{m['yaw_rmse']:.1f} / {m['pitch_rmse']:.1f} / {m['roll_rmse']:.1f} | {100 * m['emotion_accuracy']:.1f}% | "
            f"{100 * m['identity_rank1']:.1f}% ({ids}) |"
        )
    lines += ["| **issue 10 target** | | 150 (rebuild) | 5 / 5 / 5 | 80% | 90% under every control set |", ""]
    png = args.out.with_suffix(".png")
    _plot(rows, png)
    lines.append(f"![learning curves]({png.name})")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _plot(rows, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    joint = [r for r in rows if "controls untrained" not in r[0].label]
    x = [r[1] for r in joint]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, name in (("yaw_rmse", "yaw"), ("pitch_rmse", "pitch"), ("roll_rmse", "roll")):
        axes[0].plot(x, [r[3][key] for r in joint], "o-", label=name)
    axes[0].axhline(5, color="k", ls="--", lw=1, label="target")
    axes[0].set(title="pose RMSE (degrees)", xlabel="training steps", ylim=(0, None))
    axes[1].plot(x, [100 * r[3]["emotion_accuracy"] for r in joint], "o-", label="emotion (emo on)")
    axes[1].axhline(80, color="k", ls="--", lw=1, label="target")
    axes[1].axhline(12.5, color="gray", ls=":", lw=1, label="chance")
    axes[1].set(title="emotion accuracy (%)", xlabel="training steps", ylim=(0, 100))
    for c in ("id", "id+emo", "id+lmk", "id+lmk+emo"):
        axes[2].plot(x, [100 * r[3]["per_control"][c]["identity_rank1"] for r in joint], "o-", label=c)
    axes[2].axhline(90, color="k", ls="--", lw=1, label="target")
    axes[2].set(title="identity rank-1 of 100 (%)", xlabel="training steps", ylim=(0, 100))
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
