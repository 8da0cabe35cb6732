"""Losses of the joint disentanglement stage: intra-batch mixed conditioning and the AD loss (eqs. 2-3).

Eq. 2 as written — a *sum* over the sample pairs of C_n^(a,b) — per item, so the paper's
lambda_AD = 5e-4 applies unchanged (config ``lambda_ad``):

    L_dis(a, b) = mean over cross-attention layers n (E_n) of
                  sum over sample pairs (i, j) in C_n^(a,b) of
                  masked mean over positions p with M_n[p] = 1 of ReLU(cos(A_{i,a}^(n)[p], A_{j,b}^(n)[p]))

where C^(a,b) holds every ordered pair of samples of the *same item* (same target, noise and
timestep) with switch setting a for i and b for j, M_n is the item's face mask resized to the
layer's h x w (area interpolation, kept where >= 0.5), and the cosine runs over channels. L_AD sums the
five pairs of eq. 3. The paper leaves two reductions open; ours: positions are averaged over the mask
(so the value does not grow with resolution), and a micro-batch holding several items (``mixed.replicas``
< ``batch_size``) averages the per-item sums, as DDP averages over workers (the paper's batch is one item
replicated B times, where this is eq. 2 exactly). A pair (a, b) absent from the batch, or a mask empty at
a layer, contributes 0. With B = 16 replicas an (a, b) pair has about 4 x 4 = 16 sample pairs, so L_AD is
about 16x the per-pair mean an earlier version of this module used (whose 5e-4 meant ~8e-3 in the paper's units).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

#: Switch settings (a_LMK, a_EMO) of the four condition sets.
ID, ID_LMK, ID_EMO, ID_LMK_EMO = (0, 0), (1, 0), (0, 1), (1, 1)
SETTINGS: tuple[tuple[int, int], ...] = (ID, ID_LMK, ID_EMO, ID_LMK_EMO)
SETTING_NAMES: tuple[str, ...] = ("id", "id+lmk", "id+emo", "id+lmk+emo")
#: The five (a, b) pairs of eq. 3.
AD_PAIRS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    (ID, ID_LMK),
    (ID, ID_EMO),
    (ID, ID_LMK_EMO),
    (ID_LMK, ID_EMO),
    (ID_LMK, ID_LMK_EMO),
)


def draw_switches(num_items: int, replicas: int, generator: torch.Generator) -> torch.Tensor:
    """(num_items * replicas, 2) float switches: each replica gets one of the four settings uniformly."""
    idx = torch.randint(0, len(SETTINGS), (num_items * replicas,), generator=generator)
    return torch.tensor(SETTINGS, dtype=torch.float32)[idx]


def setting_counts(switches: torch.Tensor) -> dict[str, int]:
    """How many samples of a batch use each condition set (for logging)."""
    code = (switches[:, 0] > 0.5).long() + 2 * (switches[:, 1] > 0.5).long()  # id=0, lmk=1, emo=2, both=3
    counts = torch.bincount(code, minlength=4).tolist()
    return {name: int(counts[SETTINGS.index(s)]) for name, s in zip(SETTING_NAMES, SETTINGS)}


def layer_grid(seq_len: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of a layer with `seq_len` positions on an image of aspect height:width."""
    h = max(1, round(math.sqrt(seq_len * height / width)))
    w = seq_len // h
    if h * w != seq_len:
        raise ValueError(f"cannot lay {seq_len} positions out on a {height}x{width} grid")
    return h, w


def resize_masks(masks: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, H, W) {0,1} face masks -> (B, seq_len) {0,1} at the layer's resolution."""
    h, w = layer_grid(seq_len, masks.shape[-2], masks.shape[-1])
    small = F.interpolate(masks[:, None].float(), size=(h, w), mode="area")[:, 0]
    return (small >= 0.5).float().flatten(1)


def ad_pair_index(switches: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ordered sample pairs (i, j, pair id in AD_PAIRS) of the same group with settings (a, b)."""
    s = [(int(round(float(x))), int(round(float(y)))) for x, y in switches.tolist()]
    g = groups.tolist()
    ii, jj, kk = [], [], []
    for k, (a, b) in enumerate(AD_PAIRS):
        for i in range(len(s)):
            if s[i] != a:
                continue
            for j in range(len(s)):
                if s[j] == b and g[j] == g[i]:
                    ii.append(i), jj.append(j), kk.append(k)
    mk = lambda v: torch.tensor(v, dtype=torch.long, device=switches.device)  # noqa: E731
    return mk(ii), mk(jj), mk(kk)


def attention_disentanglement_loss(
    features: Mapping[str, torch.Tensor],
    switches: torch.Tensor,
    groups: torch.Tensor,
    masks: torch.Tensor,
) -> torch.Tensor:
    """L_AD (eq. 3) from per-layer attention outputs {layer: (B, seq, C)}.

    `switches` (B, 2) are the (a_LMK, a_EMO) of each sample, `groups` (B,) the item each sample is a
    replica of, `masks` (B, H, W) the face masks. See the module docstring for the normalisation.
    """
    ii, jj, _ = ad_pair_index(switches, groups)
    ref = next(iter(features.values()))
    if len(ii) == 0 or not features:
        return ref.new_zeros((), dtype=torch.float32) * ref.float().sum()  # keeps the graph connected
    num_items = len(torch.unique(groups))
    total = ref.new_zeros((), dtype=torch.float32)
    mask_cache: dict[int, torch.Tensor] = {}
    for feats in features.values():
        seq = feats.shape[1]
        if seq not in mask_cache:
            mask_cache[seq] = resize_masks(masks, seq)
        m = mask_cache[seq][ii]  # (P, seq): the item's mask (i and j share the item)
        f = feats.float()
        cos = F.cosine_similarity(f[ii], f[jj], dim=-1, eps=1e-8)  # (P, seq)
        per_pair = (F.relu(cos) * m).sum(-1) / m.sum(-1).clamp_min(1.0)  # masked mean over positions
        total = total + per_pair.sum() / num_items  # eq. 2's sum over pairs (all five of eq. 3), per item
    return total / len(features)  # mean over layers (E_n)
