"""Top-up balancing against hand-computed expectations, and the shipped fixture manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegen.cli.main import main
from facegen.labels import NUM_EMOTIONS
from facegen.manifest import load_manifest, plan_samples, plan_topup, topup_counts

REPO = Path(__file__).resolve().parents[2]
UNIFORM = np.full(NUM_EMOTIONS, 1 / NUM_EMOTIONS)
# neutral 40, happy 30, the six others 5 each: S = 100. Uniform target: M = 40 / (1/8) = 320,
# deficits = [0, 10, 35 x 6], D = 220.
SOURCE = np.array([40, 30, 5, 5, 5, 5, 5, 5])


def test_exact_deficit_fill():
    t = topup_counts(SOURCE, UNIFORM, 220)
    assert t.sufficient
    assert t.synthetic.tolist() == [0, 10, 35, 35, 35, 35, 35, 35]
    assert t.after.tolist() == [40] * 8


def test_surplus_spread_by_target_shares():
    t = topup_counts(SOURCE, UNIFORM, 300)  # 80 more than the deficits: 10 per class
    assert t.synthetic.tolist() == [10, 20, 45, 45, 45, 45, 45, 45]
    assert t.after.tolist() == [50] * 8


def test_insufficient_total_is_proportional_to_deficits():
    t = topup_counts(SOURCE, UNIFORM, 110)  # half of every deficit: [0, 5, 17.5 x 6]
    assert not t.sufficient
    # 17.5 x 6 -> floors 17 (sum 107), 3 left go to the tied remainders in class order.
    assert t.synthetic.tolist() == [0, 5, 18, 18, 18, 17, 17, 17]
    assert t.synthetic.sum() == 110


def test_non_uniform_target_and_zero_share_class():
    # target: happy 0.5, sad 0.5, others 0; source has neutral images that cannot be removed.
    target = np.zeros(8)
    target[[1, 2]] = 0.5
    source = np.array([7, 10, 4, 0, 0, 0, 0, 0])
    # M = max(10 / .5, 4 / .5) = 20 -> deficits happy 0, sad 6; total 10 -> 6 + 4 spread 2/2.
    t = topup_counts(source, target, 10)
    assert t.synthetic.tolist() == [0, 2, 8, 0, 0, 0, 0, 0]


def test_empty_source_follows_target():
    t = topup_counts(np.zeros(8, dtype=int), np.array([0.5, 0.25, 0.25, 0, 0, 0, 0, 0]), 9)
    assert t.synthetic.tolist() == [5, 2, 2, 0, 0, 0, 0, 0]  # 4.5, 2.25, 2.25 -> tie-break to class 0


@pytest.mark.parametrize("total", [1, 7, 100, 5479, 5480, 5481, 20000])
def test_fixture_totals_always_sum_and_never_overshoot(total):
    m = load_manifest(REPO / "manifests" / "topup.yaml")
    source = plan_topup(m).source
    t = topup_counts(source, UNIFORM, total)
    assert t.synthetic.sum() == total and (t.synthetic >= 0).all()
    if total <= 5480:  # never adds to a class that is already above its share of the balanced set
        assert t.synthetic[1] == 0


def test_shipped_topup_manifest_balances_exactly():
    m = load_manifest(REPO / "manifests" / "topup.yaml")
    t = plan_topup(m)
    assert t.source.tolist() == [521, 935, 177, 98, 44, 26, 173, 26]
    assert (t.source[:2].sum() / t.source.sum()) > 0.7  # AffectNet-like skew
    assert t.after.tolist() == [1000] * 8
    plan = plan_samples(m)
    counts = np.bincount(plan.column("emotion").to_numpy(), minlength=8)
    assert counts.tolist() == t.synthetic.tolist()


def test_cli_plan_reports_source_before_after(tmp_path: Path, capsys):
    assert main(["plan", "--manifest", str(REPO / "manifests" / "topup.yaml"), "--out", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "emotion (top-up)" in out
    line = next(s for s in out.splitlines() if s.strip().startswith("happy"))
    assert line.split()[1:4] == ["935", "65", "1,000"]
