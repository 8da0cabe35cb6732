"""Exact-count distributions: largest-remainder apportionment and stratified pose sampling.

Every categorical target (emotion, controls, pose strata, identities) becomes integer counts
that sum to the row total and differ from `p * total` by less than 1 (largest remainder /
Hamilton method; ties go to the lower bin index, so the result is deterministic). Rows then get
their bin codes by an in-place seeded shuffle, and continuous values are drawn inside each bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegen.manifest.schema import MAX_ABS_ANGLE, PoseAxis


def apportion_quotas(quotas: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total` from real quotas summing to `total` (largest remainder)."""
    q = np.asarray(quotas, dtype=np.float64)
    counts = np.floor(q + 1e-9).astype(np.int64)  # 1e-9: 17.4999999999 from float noise is 17.5
    short = int(total - counts.sum())
    if short < 0 or short > len(q):
        raise ValueError(f"quotas {q.tolist()} do not sum to {total}")
    frac = np.round(q - counts, 9)
    order = np.lexsort((np.arange(len(q)), -frac))
    counts[order[:short]] += 1
    return counts


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Counts for `total` items in proportion to non-negative `weights` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    s = w.sum()
    if s <= 0:
        raise ValueError("weights sum to zero")
    return apportion_quotas(total * w / s, total)


def shuffled_codes(counts: np.ndarray, rng: np.random.Generator, dtype=np.int16) -> np.ndarray:
    """`counts[k]` copies of code k, shuffled in place (no per-row temporaries beyond the array)."""
    codes = np.repeat(np.arange(len(counts), dtype=dtype), counts)
    rng.shuffle(codes)
    return codes


@dataclass(frozen=True)
class AxisBins:
    """A pose axis as strata: `weights[k]` is the target share of [edges[k], edges[k+1])."""

    kind: str  # "uniform" | "normal" | "histogram"
    edges: np.ndarray
    weights: np.ndarray
    mean: float = 0.0
    std: float = 1.0
    cdf_edges: np.ndarray | None = None  # normal only: Phi((edges - mean) / std)

    def sample(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 angles, one per code, drawn from the axis distribution restricted to that bin."""
        lo = self.edges[codes]
        hi = self.edges[codes + 1]
        u = rng.random(len(codes))
        if self.kind != "normal":
            return self._inside(lo + u * (hi - lo), codes)
        # Inverse-CDF inside the stratum: exact truncated normal overall.
        import torch

        assert self.cdf_edges is not None
        cdf_lo = self.cdf_edges[codes]
        cdf_hi = self.cdf_edges[codes + 1]
        z = torch.special.ndtri(torch.from_numpy(cdf_lo + u * (cdf_hi - cdf_lo))).numpy()
        return self._inside(self.mean + self.std * z, codes)

    def _inside(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """float32 values kept inside their stratum [lo, hi) (last stratum [lo, hi]) after rounding."""
        edges32 = self.edges.astype(np.float32)
        lo = edges32[codes]
        below_hi = np.nextafter(edges32[codes + 1], np.float32(-np.inf))
        last = codes == len(self.weights) - 1
        hi = np.where(last | (lo == edges32[codes + 1]), edges32[codes + 1], below_hi)
        return np.clip(values.astype(np.float32), lo, hi)


def axis_bins(spec: PoseAxis) -> AxisBins:
    """Strata and target weights for one pose axis spec."""
    if spec.histogram is not None:
        w = np.asarray(spec.histogram.weights, dtype=np.float64)
        return AxisBins("histogram", np.asarray(spec.histogram.edges, dtype=np.float64), w / w.sum())
    if spec.uniform is not None:
        lo, hi = spec.uniform
        if lo == hi:
            return AxisBins("uniform", np.array([lo, hi], dtype=np.float64), np.ones(1))
        return AxisBins("uniform", np.linspace(lo, hi, spec.bins + 1), np.full(spec.bins, 1.0 / spec.bins))
    normal = spec.normal
    assert normal is not None
    if normal.clip is not None:
        lo, hi = normal.clip
    else:
        lo = max(-MAX_ABS_ANGLE, normal.mean - 3 * normal.std)
        hi = min(MAX_ABS_ANGLE, normal.mean + 3 * normal.std)
    if lo == hi:
        return AxisBins("uniform", np.array([lo, hi], dtype=np.float64), np.ones(1))
    import torch

    edges = np.linspace(lo, hi, spec.bins + 1)
    cdf = torch.special.ndtr(torch.from_numpy((edges - normal.mean) / normal.std)).numpy()
    w = np.diff(cdf)
    if w.sum() <= 0:
        raise ValueError("the clip range holds no probability mass")
    return AxisBins("normal", edges, w / w.sum(), normal.mean, normal.std, cdf)
