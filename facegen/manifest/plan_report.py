"""Human-readable views of a plan summary: a per-bin text table and `plan.png` (target vs planned)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PLOT_FILE = "plan.png"


def _fmt_bin(edges: list[float], k: int) -> str:
    if edges[k] == edges[k + 1]:
        return f"= {edges[k]:g}"
    return f"[{edges[k]:g}, {edges[k + 1]:g})"


def summary_table(summary: dict) -> str:
    """Per-bin rows: target count (real, before rounding) vs planned count, plus source for top-ups."""
    lines = [f"plan: {summary['num_rows']:,} images, {summary['num_identities']:,} identities, "
             f"{summary['samples_per_shard']:,} per shard"]
    topup = summary.get("topup")
    emo = summary["emotion"]
    if topup:
        lines.append("")
        lines.append("emotion (top-up)  source  synthetic   after  share before -> after (target)")
        for row in topup["rows"]:
            lines.append(
                f"  {row['class']:<15}{row['source']:>7,}{row['synthetic']:>11,}{row['after']:>8,}"
                f"      {row['share_before']:6.1%} -> {row['share_after']:6.1%} ({row['share_target']:6.1%})"
            )
        if not topup["sufficient"]:
            lines.append("  total is below the summed deficits: each deficit was closed by the same fraction")
    else:
        lines.append("")
        lines.append(f"{'emotion':<18}{'target':>10}{'planned':>10}")
        for name, t, p in zip(emo["bins"], emo["target"], emo["planned"]):
            lines.append(f"  {name:<16}{t:>10.2f}{p:>10,}")
    ctl = summary["controls"]
    lines.append("")
    lines.append(f"{'controls':<18}{'target':>10}{'planned':>10}")
    for name, t, p in zip(ctl["bins"], ctl["target"], ctl["planned"]):
        lines.append(f"  {name:<16}{t:>10.2f}{p:>10,}")
    for axis, pose in summary["pose"].items():
        lines.append("")
        lines.append(f"{axis + ' (' + pose['kind'] + ')':<18}{'target':>10}{'planned':>10}")
        for k, (t, p) in enumerate(zip(pose["target"], pose["planned"])):
            lines.append(f"  {_fmt_bin(pose['edges'], k):<16}{t:>10.2f}{p:>10,}")
    return "\n".join(lines)


def save_plan_plot(summary: dict, out_dir: str | Path) -> Path:
    """Bar charts of target vs planned counts (and source/after for top-ups) -> `out_dir/plan.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), dpi=80)
    emo = summary["emotion"]
    x = np.arange(len(emo["bins"]))
    ax = axes[0, 0]
    if "source" in emo:
        ax.bar(x - 0.3, emo["source"], 0.3, label="source")
        ax.bar(x, emo["after"], 0.3, label="source + synthetic")
        ax.bar(x + 0.3, emo["target"], 0.3, label="target", alpha=0.6)
        ax.set_title("emotion (top-up)")
    else:
        ax.bar(x - 0.2, emo["target"], 0.4, label="target")
        ax.bar(x + 0.2, emo["planned"], 0.4, label="planned")
        ax.set_title("emotion")
    ax.set_xticks(x, emo["bins"], rotation=45, ha="right")
    ax.legend(fontsize=8)
    ctl = summary["controls"]
    x = np.arange(len(ctl["bins"]))
    ax = axes[0, 1]
    ax.bar(x - 0.2, ctl["target"], 0.4, label="target")
    ax.bar(x + 0.2, ctl["planned"], 0.4, label="planned")
    ax.set_xticks(x, ctl["bins"])
    ax.set_title("controls")
    ax.legend(fontsize=8)
    axes[0, 2].axis("off")
    axes[0, 2].text(0.0, 0.5, f"{summary['num_rows']:,} images\n{summary['num_identities']:,} identities\n"
                    f"{summary['samples_per_shard']:,} per shard", fontsize=14, va="center")
    for ax, (axis, pose) in zip(axes[1], summary["pose"].items()):
        edges = np.asarray(pose["edges"])
        widths = np.diff(edges)
        if widths.sum() == 0:
            widths = np.ones_like(widths)
        ax.bar(edges[:-1], pose["target"], widths, align="edge", alpha=0.5, label="target", edgecolor="k")
        ax.step(np.r_[edges[:-1], edges[-1]], np.r_[pose["planned"], pose["planned"][-1]], where="post", label="planned", color="C1")
        ax.set_title(f"{axis} ({pose['kind']}), degrees")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / PLOT_FILE
    fig.savefig(path)
    plt.close(fig)
    return path
