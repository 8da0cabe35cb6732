"""FaceCrafterPipeline: batched eq. 6, per-sample seeds, schedulers, end-to-end on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.errors import FacegenError
from facegen.model.pipeline import BranchPlan, GuidanceWeights, combine_guidance, to_uint8

USE_LMK = torch.tensor([True, False, True, False])
USE_EMO = torch.tensor([False, False, True, True])


def test_branch_plan_uses_only_requested_branches():
    assert BranchPlan.for_samples([False] * 3, [False] * 3).rows == [
        (0, "uncond"), (0, "id"), (1, "uncond"), (1, "id"), (2, "uncond"), (2, "id")
    ]
    plan = BranchPlan.for_samples(USE_LMK.tolist(), USE_EMO.tolist())
    assert len(plan.rows) == 2 * 4 + 2 + 2
    assert plan.index("lmk", 4).tolist() == [2, -1, 7, -1]
    assert plan.index("emo", 4).tolist() == [-1, -1, 8, 11]


def test_batched_eq6_step_equals_separate_unet_calls(tiny_pipe, conditions):
    pipe, batch = tiny_pipe, 4
    cond = conditions(batch, pipe.landmark_image_size, seed=5)
    weights = GuidanceWeights(id=2.5, lmk=2.0, emo=1.5)
    with torch.no_grad():
        enc = pipe.encode_conditions(cond["id_embeds"], cond["landmark_images"], cond["emotions"], USE_LMK, USE_EMO)
        latents = torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(5))
        t = torch.tensor(700)
        plan = BranchPlan.for_samples(USE_LMK.tolist(), USE_EMO.tolist())
        batched = combine_guidance(pipe.unet_rows(latents, t, plan, enc), plan, batch, weights)

        def eps(i, context, lmk=0.0, emo=0.0):
            kwargs = {
                "lmk_tokens": enc["lmk"][i : i + 1], "emo_tokens": enc["emo"][i : i + 1],
                "lmk_scale": torch.tensor([lmk]), "emo_scale": torch.tensor([emo]),
            }
            return pipe.unet(latents[i : i + 1], t, encoder_hidden_states=context[i : i + 1],
                             cross_attention_kwargs=kwargs).sample

        for i in range(batch):
            e_u, e_id = eps(i, enc["uncond"]), eps(i, enc["id"])
            expected = e_u + weights.id * (e_id - e_u)
            if USE_LMK[i]:
                expected = expected + weights.lmk * (eps(i, enc["id"], lmk=1.0) - e_id)
            if USE_EMO[i]:
                expected = expected + weights.emo * (eps(i, enc["id"], emo=1.0) - e_id)
            assert (batched[i : i + 1] - expected).abs().max().item() <= 1e-5, i
        # the guidance terms are not negligible: dropping the LMK term would change sample 0
        assert (eps(0, enc["id"], lmk=1.0) - eps(0, enc["id"])).abs().max() > 1e-3


def test_unet_called_once_per_step(tiny_pipe, conditions, monkeypatch):
    pipe = tiny_pipe
    cond = conditions(4, pipe.landmark_image_size, seed=6)
    calls = []
    original = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda sample, *a, **k: calls.append(sample.shape[0]) or original(sample, *a, **k))
    pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=[0, 1, 2, 3], num_inference_steps=3)
    assert calls == [12, 12, 12]
    calls.clear()
    pipe(cond["id_embeds"], seeds=[0, 1, 2, 3], num_inference_steps=2)  # ID only: plain 2-way CFG
    assert calls == [8, 8]


@pytest.mark.parametrize("scheduler", ["dpmpp", "ddpm", "dpmpp-sde"])
def test_image_depends_only_on_its_own_seed_and_conditions(tiny_pipe, conditions, scheduler):
    pipe = tiny_pipe
    others = conditions(4, pipe.landmark_image_size, seed=7)
    target = conditions(1, pipe.landmark_image_size, seed=8)
    kwargs = dict(num_inference_steps=4, scheduler=scheduler, output_type="np")
    alone = pipe(**target, use_lmk=torch.tensor([True]), use_emo=torch.tensor([True]), seeds=[1234], **kwargs)
    mixed = {k: torch.cat([others[k][:2], target[k], others[k][2:]]) for k in target}
    batch = pipe(
        **mixed,
        use_lmk=torch.tensor([False, True, True, False, True]),
        use_emo=torch.tensor([False, False, True, True, True]),
        seeds=[1, 2, 1234, 3, 4],
        **kwargs,
    )
    images, single = to_uint8(batch.images).astype(int), to_uint8(alone.images).astype(int)
    assert np.abs(images[2] - single[0]).max() <= 1
    assert batch.settings[2] == alone.settings[0]
    # a different seed gives a different image
    assert np.abs(images[4] - single[0]).max() > 10


def test_tiny_end_to_end_four_images(tiny_pipe, conditions):
    pipe = tiny_pipe
    cond = conditions(4, pipe.landmark_image_size, seed=9)
    out = pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=[10, 11, 12, 13], num_inference_steps=5, scheduler="ddim")
    assert len(out.images) == 4 and all(img.size == (pipe.resolution, pipe.resolution) for img in out.images)
    assert len({img.tobytes() for img in out.images}) == 4
    assert [s["use_lmk"] for s in out.settings] == USE_LMK.tolist()
    assert [s["use_emo"] for s in out.settings] == USE_EMO.tolist()
    assert out.settings[0]["scheduler"] == "ddim" and out.settings[0]["num_inference_steps"] == 5
    assert out.settings[0]["guidance"] == {"id": 2.5, "lmk": 2.0, "emo": 2.0}
    assert out.settings[0]["model_hash"] == pipe.model_hash and pipe.model_id == "tiny"
    again = pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=[10, 11, 12, 13], num_inference_steps=5, scheduler="ddim")
    assert np.array_equal(np.stack(out.images), np.stack(again.images))
    assert pipe.scheduler.__class__.__name__ == "DPMSolverMultistepScheduler"  # the per-call name swapped nothing


def test_bad_requests_are_user_errors(tiny_pipe, conditions):
    pipe = tiny_pipe
    cond = conditions(2, pipe.landmark_image_size)
    with pytest.raises(FacegenError, match="seeds"):
        pipe(cond["id_embeds"], seeds=[1])
    with pytest.raises(FacegenError, match="id_embeds"):
        pipe(cond["id_embeds"][:, :100], seeds=[1, 2])
    with pytest.raises(FacegenError, match="landmark_images"):
        pipe(cond["id_embeds"], use_lmk=torch.tensor([True, False]), seeds=[1, 2])
    with pytest.raises(FacegenError, match="landmark_images"):
        pipe(cond["id_embeds"], landmark_images=cond["landmark_images"][:, :, :8], seeds=[1, 2])
    with pytest.raises(FacegenError, match="float"):
        pipe(cond["id_embeds"], landmark_images=(cond["landmark_images"] * 255).to(torch.uint8), seeds=[1, 2])
    with pytest.raises(FacegenError, match="scheduler"):
        pipe(cond["id_embeds"], seeds=[1, 2], scheduler="euler")  # type: ignore[arg-type]
