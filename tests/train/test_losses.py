"""AD loss (eqs. 2-3) against a direct loop implementation; intra-batch mixed conditioning frequencies."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facegen.train.losses import (
    AD_PAIRS,
    SETTING_NAMES,
    attention_disentanglement_loss,
    draw_switches,
    resize_masks,
    setting_counts,
)


def reference_ad_loss(features, switches, groups, masks):
    """Eq. 3 = sum over the five pairs of eq. 2, written as plain loops over layers, pairs and positions.

    Eq. 2 as printed: E_n [ sum over (i, j) in C_n^(a,b) of the masked ReLU(cos) ] (positions: masked
    mean); several items in one batch: the mean of the per-item values."""
    height, width = masks.shape[-2:]
    num_items = len(set(groups.tolist()))
    total = 0.0
    for a, b in AD_PAIRS:
        per_layer = []
        for feats in features.values():
            batch, seq, _ = feats.shape
            h = int(round(math.sqrt(seq * height / width)))
            w = seq // h
            # mask resized to the layer's h x w: fraction of face pixels in each cell >= 1/2
            cell_h, cell_w = height // h, width // w
            pair_values = []
            for i in range(batch):
                for j in range(batch):
                    if groups[i] != groups[j] or tuple(switches[i].int().tolist()) != a or tuple(switches[j].int().tolist()) != b:
                        continue
                    num, den = 0.0, 0.0
                    for p in range(seq):
                        y, x = divmod(p, w)
                        cell = masks[i, y * cell_h : (y + 1) * cell_h, x * cell_w : (x + 1) * cell_w]
                        m = 1.0 if cell.float().mean() >= 0.5 else 0.0
                        u, v = feats[i, p], feats[j, p]
                        cos = (u * v).sum() / (u.norm() * v.norm())
                        num = num + m * torch.clamp(cos, min=0.0)
                        den += m
                    pair_values.append(num / max(den, 1.0))
            per_layer.append(sum(pair_values) / num_items)  # eq. 2: a sum over the pairs
        total = total + sum(per_layer) / len(per_layer)
    return total


def _handmade(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # two items x 6 replicas; layer outputs at 4x4 and 2x2 on an 8x8 image
    switches = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [0, 0], [0, 0], [1, 0], [1, 1]], dtype=torch.float32)
    groups = torch.tensor([0] * 6 + [1] * 6)
    base = torch.randn(2, 16, 5, generator=g)
    features = {
        "down.attn2": (base.repeat_interleave(6, 0) + 0.8 * torch.randn(12, 16, 5, generator=g)).requires_grad_(),
        "up.attn2": torch.randn(12, 4, 7, generator=g).requires_grad_(),
    }
    masks = torch.zeros(12, 8, 8)
    masks[:6, 2:7, 1:6] = 1  # item 0: an off-centre face
    masks[6:, 0:4, :] = 1  # item 1: top half
    return features, switches, groups, masks


def test_ad_loss_matches_loop_reference():
    features, switches, groups, masks = _handmade()
    with torch.no_grad():
        ours = attention_disentanglement_loss(features, switches, groups, masks)
        ref = reference_ad_loss(features, switches, groups, masks)
    assert ours.item() > 0
    assert ours.item() == pytest.approx(float(ref), rel=1e-5, abs=1e-6)


def test_ad_loss_is_a_sum_over_pairs_as_eq2_writes():
    """One item, 16 replicas (the paper's joint batch): L_AD is eq. 3's sum of eq. 2's sums over pairs,
    written out by hand for identical all-ones masks and constant per-sample features."""
    switches = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]] * 4, dtype=torch.float32)
    groups = torch.zeros(16, dtype=torch.long)
    g = torch.Generator().manual_seed(5)
    vecs = torch.randn(16, 6, generator=g)  # one feature vector per sample, the same at every position
    features = {"a.attn2": vecs[:, None, :].expand(16, 4, 6).contiguous(), "b.attn2": vecs[:, None, :].repeat(1, 16, 1)}
    masks = torch.ones(16, 8, 8)
    relu_cos = F.relu(F.cosine_similarity(vecs[:, None], vecs[None, :], dim=-1))  # (16, 16)
    expected = 0.0
    for a, b in AD_PAIRS:  # eq. 3
        for i in range(16):  # eq. 2: sum over (i, j) in C^(a,b)
            for j in range(16):
                if tuple(switches[i].int().tolist()) == a and tuple(switches[j].int().tolist()) == b:
                    expected += float(relu_cos[i, j])
    ours = attention_disentanglement_loss(features, switches, groups, masks)
    assert ours.item() == pytest.approx(expected, rel=1e-5)  # the same at both layers -> E_n changes nothing
    # each (a, b) pair has 4 x 4 sample pairs: a per-pair mean would be ~16x smaller
    assert expected > 4 * sum(
        float(relu_cos[[i for i in range(16) if tuple(switches[i].int().tolist()) == a]][:, [j for j in range(16) if tuple(switches[j].int().tolist()) == b]].mean())
        for a, b in AD_PAIRS
    )


def test_ad_loss_mask_and_relu_shape_the_gradient():
    features, switches, groups, masks = _handmade(seed=1)
    loss = attention_disentanglement_loss(features, switches, groups, masks)
    loss.backward()
    grad = features["down.attn2"].grad
    small = resize_masks(masks, 16)  # (B, 16)
    # positions outside the face mask get no gradient ...
    assert torch.all(grad[small == 0] == 0)
    # ... nor positions where every compared pair has a negative cosine (ReLU cut-off)
    f = features["down.attn2"].detach()
    assert grad[small == 1].abs().sum() > 0
    # sample 2 (id+emo, item 0) only meets sample 1 and 4 (id+lmk) via pair (ID+LMK, ID+EMO) and samples 0/5 via (ID, ID+EMO)
    others = [1, 4, 0, 5]
    cos2 = torch.stack([F.cosine_similarity(f[2], f[o], dim=-1) for o in others])
    dead = (cos2 <= 0).all(0) & (small[2] == 1)
    assert torch.all(grad[2][dead] == 0)


def test_ad_loss_zero_when_pairs_absent_and_mask_empty():
    features, switches, groups, masks = _handmade()
    only_id = torch.zeros_like(switches)
    assert attention_disentanglement_loss(features, only_id, groups, masks).item() == 0.0
    assert attention_disentanglement_loss(features, switches, groups, torch.zeros_like(masks)).item() == 0.0
    # different items never pair: each sample its own group -> no pairs
    assert attention_disentanglement_loss(features, switches, torch.arange(12), masks).item() == 0.0


def test_mixed_conditioning_frequencies_over_many_batches():
    g = torch.Generator().manual_seed(123)
    totals = dict.fromkeys(SETTING_NAMES, 0)
    batches, batch = 400, 8
    for _ in range(batches):
        sw = draw_switches(1, batch, g)
        assert sw.shape == (batch, 2)
        counts = setting_counts(sw)
        assert sum(counts.values()) == batch
        for k, v in counts.items():
            totals[k] += v
    n = batches * batch
    expected = n / 4
    chi2 = sum((totals[k] - expected) ** 2 / expected for k in totals)
    # chi-square with 3 degrees of freedom: P(chi2 > 16.27) = 0.001
    assert chi2 < 16.27, totals
    assert all(v > 0 for v in totals.values())
