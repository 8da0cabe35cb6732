"""Compositional classifier-free guidance, FaceCrafter eq. 6, over one batched UNet output.

    e = e(x) + wID (e(x,id) - e(x)) + wLMK (e(x,id,lmk) - e(x,id)) + wEMO (e(x,id,emo) - e(x,id))

Per step, every branch every sample needs (uncond, id, and id+lmk / id+emo only where that sample
uses them) is one row of ONE batched UNet call; :class:`BranchPlan` says which row is which.

Guidance intervals (:class:`GuidanceIntervals`; Kynkaenniemi et al., NeurIPS 2024, "Applying guidance
in a limited interval") switch a branch's *delta* off outside a step-fraction or sigma interval, and the
rows only that delta needed leave the batched call. What eq. 6 reduces to at such a step:

- a switched-off control (lmk / emo) is NOT dropped from the conditioning: it is folded into every
  conditional row ("base" row = id + the switched-off controls the sample uses), so it stays in the
  prediction with the weight of whatever delta still carries the base row;
- the id delta switched off removes the unconditional row; the base row then enters with weight 1
  (no guidance, the conditional prediction), exactly as guidance weight 1 means "no guidance" in CFG.

So, with A = the sample's controls whose delta is on and c0 = id + its other controls:

    id on :  e = e(x) + wID (e(x,c0) - e(x)) + sum_{b in A} wb (e(x,c0+b) - e(x,c0))
    id off:  e = e(x,c0)                     + sum_{b in A} wb (e(x,c0+b) - e(x,c0))

With every delta on, c0 = id and this is eq. 6 term for term (same rows, same order, same float ops:
bit-identical). With every delta off it is ONE row per sample, e(x, id, lmk, emo): the joint
conditional the joint training stage trains (all four switch settings). That is the one-row form of eq. 6
at wID = wLMK = wEMO = 1, which is e(x,id,lmk) + e(x,id,emo) - e(x,id): the two agree exactly when the
controls' effects on the noise prediction add up, which the switched attention
(Attn_ID + a_LMK Attn_LMK + a_EMO Attn_EMO per layer) makes true to first order. The unconditional row
never carries a control (uncond + control is a combination training never sees).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from facegen.errors import FacegenError

#: The branches whose deltas eq. 6 adds, in eq. 6's order.
BRANCHES: tuple[str, ...] = ("id", "lmk", "emo")
#: How a guidance interval is measured: the fraction of the sampling run, or the noise level sigma.
INTERVAL_UNITS: tuple[str, ...] = ("fraction", "sigma")


@dataclass(frozen=True)
class GuidanceWeights:
    """Control scales of eq. 6 (these defaults are the paper's and the pipeline config's)."""

    id: float = 2.5
    lmk: float = 2.0
    emo: float = 2.0


@dataclass(frozen=True)
class GuidanceIntervals:
    """Per branch, the closed interval [lo, hi] in which its eq.-6 delta is computed (None = every step).

    `unit="fraction"`: step i of N sits at fraction (i + 0.5) / N of the run (0 = pure noise, 1 = the
    image), so [0, 1] covers every step and [0, 0.5] / [0.5, 1] split a run into halves.
    `unit="sigma"`: step i sits at the noise level sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) of its
    timestep (SD1.5's schedule runs from ~14.6 down to ~0.03), e.g. `id=(0.28, 5.42)` as in the paper.
    """

    unit: str = "fraction"
    id: tuple[float, float] | None = None
    lmk: tuple[float, float] | None = None
    emo: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.unit not in INTERVAL_UNITS:
            raise FacegenError(f"unit {self.unit!r} is unknown; use one of {', '.join(INTERVAL_UNITS)}", where="guidance_intervals")
        for branch in BRANCHES:
            value = getattr(self, branch)
            if value is None:
                continue
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise FacegenError(f"{branch} must be [lo, hi] or None; got {value!r}", where="guidance_intervals") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo < 0 or (self.unit == "fraction" and hi > 1):
                bounds = "0 <= lo <= hi <= 1" if self.unit == "fraction" else "0 <= lo <= hi"
                raise FacegenError(f"{branch} [{lo:g}, {hi:g}] must satisfy {bounds}", where="guidance_intervals")
            object.__setattr__(self, branch, (lo, hi))

    @classmethod
    def parse(cls, value: GuidanceIntervals | Mapping[str, Any] | None) -> GuidanceIntervals | None:
        """None, an instance, a mapping like the manifest's `sampler.guidance_intervals`, or that section."""
        if value is None or isinstance(value, cls):
            return value
        if hasattr(value, "model_dump"):  # the manifest's pydantic `sampler.guidance_intervals`
            value = value.model_dump()
        if not isinstance(value, Mapping):
            raise FacegenError(f"must be a GuidanceIntervals, a mapping or None; got {type(value).__name__}", where="guidance_intervals")
        unknown = sorted(set(value) - {"unit", *BRANCHES})
        if unknown:
            raise FacegenError(f"unknown keys {unknown}; use unit, {', '.join(BRANCHES)}", where="guidance_intervals")
        return cls(**{k: (tuple(v) if k != "unit" and v is not None else v) for k, v in value.items()})

    @property
    def needs_sigma(self) -> bool:
        return self.unit == "sigma" and any(getattr(self, b) is not None for b in BRANCHES)

    def active(self, step: int, num_steps: int, sigma: float | None = None) -> frozenset[str]:
        """The branches whose delta step `step` (0-based, of `num_steps`) computes."""
        position = (step + 0.5) / num_steps if self.unit == "fraction" else sigma
        on = []
        for branch in BRANCHES:
            interval = getattr(self, branch)
            if interval is None:
                on.append(branch)
                continue
            if position is None:
                raise FacegenError("sigma intervals need the step's sigma (the scheduler has no alphas_cumprod)", where="guidance_intervals")
            if interval[0] <= position <= interval[1]:
                on.append(branch)
        return frozenset(on)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (what labels record): {"unit": ..., "id": [lo, hi] | None, ...}."""
        out: dict[str, Any] = {"unit": self.unit}
        for branch in BRANCHES:
            value = getattr(self, branch)
            out[branch] = None if value is None else [value[0], value[1]]
        return out


def step_branches(
    intervals: GuidanceIntervals | None, num_steps: int, sigmas: Sequence[float] | None = None
) -> list[frozenset[str]]:
    """Per step, the branches whose delta is computed (all of them without intervals)."""
    if intervals is None:
        return [frozenset(BRANCHES)] * num_steps
    return [intervals.active(i, num_steps, None if sigmas is None else float(sigmas[i])) for i in range(num_steps)]


@dataclass(frozen=True)
class BranchPlan:
    """Which UNet rows a step evaluates: `rows[i]` = (sample index, branch name).

    `folded[s]` = (lmk, emo): controls sample s uses whose delta is off this step; they are switched on in
    every conditional row of that sample (see the module docstring). Empty = nothing folded (eq. 6).
    """

    rows: list[tuple[int, str]]
    folded: tuple[tuple[bool, bool], ...] = field(default=())

    @classmethod
    def for_samples(
        cls, use_lmk: Sequence[bool], use_emo: Sequence[bool], active: Collection[str] = BRANCHES
    ) -> BranchPlan:
        rows: list[tuple[int, str]] = []
        folded: list[tuple[bool, bool]] = []
        lmk_on, emo_on = "lmk" in active, "emo" in active
        for i, (lmk, emo) in enumerate(zip(use_lmk, use_emo)):
            if "id" in active:
                rows.append((i, "uncond"))
            rows.append((i, "id"))
            if lmk and lmk_on:
                rows.append((i, "lmk"))
            if emo and emo_on:
                rows.append((i, "emo"))
            folded.append((bool(lmk) and not lmk_on, bool(emo) and not emo_on))
        return cls(rows, tuple(folded) if any(a or b for a, b in folded) else ())

    def index(self, branch: str, num_samples: int) -> torch.Tensor:
        """Row index of `branch` for every sample (-1 where the sample has no such row)."""
        index = torch.full((num_samples,), -1, dtype=torch.long)
        for row, (sample, name) in enumerate(self.rows):
            if name == branch:
                index[sample] = row
        return index

    def scales(self, control: str) -> list[float]:
        """Per row, the switch a_LMK (`control="lmk"`) or a_EMO (`"emo"`) of the switched attention."""
        k = ("lmk", "emo").index(control)
        return [
            1.0 if name == control or (name != "uncond" and self.folded and self.folded[s][k]) else 0.0
            for s, name in self.rows
        ]

    def rows_per_sample(self, num_samples: int) -> list[int]:
        counts = [0] * num_samples
        for sample, _ in self.rows:
            counts[sample] += 1
        return counts


def combine_guidance(
    eps: torch.Tensor, plan: BranchPlan, num_samples: int, guidance: GuidanceWeights
) -> torch.Tensor:
    """Eq. 6 (or its interval-reduced form, see the module docstring) from one batched UNet output."""
    uncond_index = plan.index("uncond", num_samples)
    ident = eps[plan.index("id", num_samples)]
    has_uncond = uncond_index >= 0
    if bool(has_uncond.all()):
        uncond = eps[uncond_index]
        out = uncond + guidance.id * (ident - uncond)
    else:  # id delta off (for some samples): their base row enters with weight 1
        out = ident.clone()
        if has_uncond.any():
            uncond = eps[uncond_index[has_uncond]]
            out[has_uncond] = uncond + guidance.id * (ident[has_uncond] - uncond)
    for branch, weight in (("lmk", guidance.lmk), ("emo", guidance.emo)):
        index = plan.index(branch, num_samples)
        has = index >= 0
        if has.any():
            delta = torch.zeros_like(out)
            delta[has] = eps[index[has]] - ident[has]
            out = out + weight * delta
    return out


def planned_rows(
    use_lmk: Sequence[bool],
    use_emo: Sequence[bool],
    intervals: GuidanceIntervals | None,
    num_steps: int,
    sigmas: Sequence[float] | None = None,
) -> list[int]:
    """UNet rows each sample costs over a whole run (full eq. 6: (2 + #controls) x steps)."""
    total = [0] * len(use_lmk)
    for active in step_branches(intervals, num_steps, sigmas):
        for i, n in enumerate(BranchPlan.for_samples(use_lmk, use_emo, active).rows_per_sample(len(use_lmk))):
            total[i] += n
    return total
