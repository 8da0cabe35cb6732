"""Guidance intervals: full intervals are eq. 6 bit for bit, dropped rows really leave the UNet call,
and the reduced formula is what facegen/model/guidance.py says."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from facegen.errors import FacegenError
from facegen.model.guidance import BranchPlan, GuidanceIntervals, GuidanceWeights, combine_guidance, planned_rows
from facegen.model.pipeline import rows_per_image
from facegen.model.schedulers import step_sigmas

USE_LMK = torch.tensor([True, False, True, False])
USE_EMO = torch.tensor([False, False, True, True])
SEEDS = [3, 4, 5, 6]
FULL = [
    {"unit": "fraction", "id": [0.0, 1.0], "lmk": [0.0, 1.0], "emo": [0.0, 1.0]},
    {"unit": "sigma", "id": [0.0, 1e9], "lmk": [0.0, 1e9], "emo": [0.0, 1e9]},
    {"unit": "fraction"},  # every branch left out = every step
]


# ---- today's eq. 6, copied from the pipeline before intervals existed (the reference) -------------
def _old_plan(use_lmk, use_emo):
    rows = []
    for i, (lmk, emo) in enumerate(zip(use_lmk, use_emo)):
        rows += [(i, "uncond"), (i, "id")]
        if lmk:
            rows.append((i, "lmk"))
        if emo:
            rows.append((i, "emo"))
    return rows


def _old_index(rows, branch, n):
    index = torch.full((n,), -1, dtype=torch.long)
    for row, (sample, name) in enumerate(rows):
        if name == branch:
            index[sample] = row
    return index


def _old_combine(eps, rows, n, guidance):
    uncond = eps[_old_index(rows, "uncond", n)]
    ident = eps[_old_index(rows, "id", n)]
    out = uncond + guidance.id * (ident - uncond)
    for branch, weight in (("lmk", guidance.lmk), ("emo", guidance.emo)):
        index = _old_index(rows, branch, n)
        has = index >= 0
        if has.any():
            delta = torch.zeros_like(out)
            delta[has] = eps[index[has]] - ident[has]
            out = out + weight * delta
    return out


def _old_unet_rows(pipe, latents, t, rows, conditions):
    samples = torch.tensor([s for s, _ in rows], dtype=torch.long, device=latents.device)
    branches = [b for _, b in rows]
    context = torch.stack([conditions["uncond" if b == "uncond" else "id"][s] for s, b in rows])
    kwargs = {
        "lmk_tokens": conditions["lmk"][samples],
        "emo_tokens": conditions["emo"][samples],
        "lmk_scale": torch.tensor([1.0 if b == "lmk" else 0.0 for b in branches], device=latents.device),
        "emo_scale": torch.tensor([1.0 if b == "emo" else 0.0 for b in branches], device=latents.device),
    }
    return pipe.unet(latents[samples], t, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample


@torch.no_grad()
def _old_eq6_latents(pipe, cond, steps, scheduler_name):
    from facegen.model.schedulers import scheduler_from_name

    batch = len(SEEDS)
    sched = scheduler_from_name(scheduler_name, pipe.scheduler.config)
    sched.set_timesteps(steps, device="cpu")
    gens = [torch.Generator("cpu").manual_seed(s) for s in SEEDS]
    size = pipe.resolution // pipe.vae_scale_factor
    latents = torch.cat([torch.randn((1, 4, size, size), generator=g, dtype=torch.float32) for g in gens])
    latents = latents * sched.init_noise_sigma
    conditions = pipe.encode_conditions(cond["id_embeds"], cond["landmark_images"], cond["emotions"], USE_LMK, USE_EMO)
    rows = _old_plan(USE_LMK.tolist(), USE_EMO.tolist())
    step_kwargs = {"generator": gens} if "generator" in inspect.signature(sched.step).parameters else {}
    for t in sched.timesteps:
        model_input = sched.scale_model_input(latents, t).to(pipe.unet.dtype)
        eps = _old_combine(_old_unet_rows(pipe, model_input, t, rows, conditions).float(), rows, batch, pipe.default_guidance)
        latents = sched.step(eps, t, latents, **step_kwargs).prev_sample
    return latents


@pytest.mark.parametrize("scheduler", ["dpmpp", "ddpm", "dpmpp-sde"])
def test_full_intervals_are_todays_eq6_bit_for_bit(tiny_pipe, conditions, scheduler):
    pipe = tiny_pipe
    cond = conditions(len(SEEDS), pipe.landmark_image_size, seed=21)
    reference = _old_eq6_latents(pipe, cond, 4, scheduler)
    kwargs = dict(use_lmk=USE_LMK, use_emo=USE_EMO, seeds=SEEDS, num_inference_steps=4, scheduler=scheduler, output_type="latent")
    plain = pipe(**cond, **kwargs).images
    assert torch.equal(plain, reference)
    for full in FULL:
        assert torch.equal(pipe(**cond, **kwargs, guidance_intervals=full).images, reference), full
    # ... and intervals that skip something do change the result
    assert not torch.equal(pipe(**cond, **kwargs, guidance_intervals={"lmk": [0.0, 0.5]}).images, reference)


def _count_rows(pipe, monkeypatch) -> list[int]:
    calls: list[int] = []
    original = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda sample, *a, **k: calls.append(sample.shape[0]) or original(sample, *a, **k))
    return calls


def test_rows_outside_intervals_leave_the_unet_call(tiny_pipe, conditions, monkeypatch):
    pipe = tiny_pipe
    cond = conditions(4, pipe.landmark_image_size, seed=22)
    calls = _count_rows(pipe, monkeypatch)
    # 4 steps at fractions 0.125, 0.375, 0.625, 0.875
    intervals = {"id": [0.25, 0.75], "lmk": [0.0, 0.5], "emo": [0.5, 1.0]}
    out = pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=SEEDS, num_inference_steps=4, guidance_intervals=intervals)
    # per sample (lmk, emo) = (1,0) (0,0) (1,1) (0,1); rows = [uncond if id] + base + active controls used
    # step 0 {lmk}:     1+1, 1, 1+1, 1 = 6        step 1 {id, lmk}: 3, 2, 3, 2 = 10
    # step 2 {id, emo}: 2, 2, 3, 3 = 10           step 3 {emo}:     1, 1, 2, 2 = 6
    assert calls == [6, 10, 10, 6]
    assert [s["unet_rows"] for s in out.settings] == [8, 6, 10, 8]
    assert sum(s["unet_rows"] for s in out.settings) == sum(calls)
    assert out.settings[0]["guidance_intervals"] == {"unit": "fraction", "id": [0.25, 0.75], "lmk": [0.0, 0.5], "emo": [0.5, 1.0]}
    assert planned_rows(USE_LMK.tolist(), USE_EMO.tolist(), GuidanceIntervals.parse(intervals), 4) == [8, 6, 10, 8]
    calls.clear()
    none = {"id": [0.0, 0.0], "lmk": [0.0, 0.0], "emo": [0.0, 0.0]}  # no delta at any step: one row per sample
    out = pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=SEEDS, num_inference_steps=3, guidance_intervals=none)
    assert calls == [4, 4, 4] and [s["unet_rows"] for s in out.settings] == [3, 3, 3, 3]
    calls.clear()
    out = pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=SEEDS, num_inference_steps=2)
    assert calls == [12, 12] and out.settings[0]["guidance_intervals"] is None and out.settings[2]["unet_rows"] == 8


def test_reduced_eq6_is_what_the_docstring_says(tiny_pipe, conditions):
    """id off: e = e(c0) + sum_A wb (e(c0+b) - e(c0)); everything off: e = e(x, id, lmk, emo) (one row)."""
    pipe, batch = tiny_pipe, 4
    cond = conditions(batch, pipe.landmark_image_size, seed=23)
    w = GuidanceWeights(id=2.5, lmk=2.0, emo=1.5)
    with torch.no_grad():
        enc = pipe.encode_conditions(cond["id_embeds"], cond["landmark_images"], cond["emotions"], USE_LMK, USE_EMO)
        latents = torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(23))
        t = torch.tensor(600)

        def eps(i, context, lmk=0.0, emo=0.0):
            kwargs = {"lmk_tokens": enc["lmk"][i : i + 1], "emo_tokens": enc["emo"][i : i + 1],
                      "lmk_scale": torch.tensor([lmk]), "emo_scale": torch.tensor([emo])}
            return pipe.unet(latents[i : i + 1], t, encoder_hidden_states=context[i : i + 1], cross_attention_kwargs=kwargs).sample

        def batched(active):
            plan = BranchPlan.for_samples(USE_LMK.tolist(), USE_EMO.tolist(), active)
            return combine_guidance(pipe.unet_rows(latents, t, plan, enc), plan, batch, w)

        nothing, emo_only, id_lmk = batched(frozenset()), batched(frozenset({"emo"})), batched(frozenset({"id", "lmk"}))
        for i in range(batch):
            lmk, emo = float(USE_LMK[i]), float(USE_EMO[i])
            joint = eps(i, enc["id"], lmk, emo)
            assert (nothing[i : i + 1] - joint).abs().max() <= 1e-5, i
            base = eps(i, enc["id"], lmk, 0.0)  # emo's delta on, lmk folded into the base row
            expected = base + w.emo * (eps(i, enc["id"], lmk, 1.0) - base) if emo else base
            assert (emo_only[i : i + 1] - expected).abs().max() <= 1e-5, i
            base, e_u = eps(i, enc["id"], 0.0, emo), eps(i, enc["uncond"])  # uncond rows never carry controls
            expected = e_u + w.id * (base - e_u)
            if lmk:
                expected = expected + w.lmk * (eps(i, enc["id"], 1.0, emo) - base)
            assert (id_lmk[i : i + 1] - expected).abs().max() <= 1e-5, i


def test_image_still_depends_only_on_its_own_seed_and_conditions(tiny_pipe, conditions):
    pipe = tiny_pipe
    others, target = conditions(3, pipe.landmark_image_size, seed=24), conditions(1, pipe.landmark_image_size, seed=25)
    kwargs = dict(num_inference_steps=4, output_type="latent", guidance_intervals={"id": [0.2, 1.0], "lmk": [0.0, 0.6], "emo": [0.4, 1.0]})
    alone = pipe(**target, use_lmk=[True], use_emo=[True], seeds=[77], **kwargs)
    mixed = {k: torch.cat([others[k][:1], target[k], others[k][1:]]) for k in target}
    batch = pipe(**mixed, use_lmk=[False, True, True, False], use_emo=[True, True, False, False], seeds=[1, 77, 2, 3], **kwargs)
    assert (batch.images[1] - alone.images[0]).abs().max() <= 1e-4
    assert batch.settings[1] == alone.settings[0]


def test_sigma_intervals_follow_the_noise_schedule(tiny_pipe, tiny_model_dir: Path):
    from facegen.model.schedulers import scheduler_from_name

    sched = scheduler_from_name("ddim", tiny_pipe.scheduler.config)
    sched.set_timesteps(10)
    sigmas = step_sigmas(sched)
    assert len(sigmas) == 10 and all(a > b for a, b in zip(sigmas, sigmas[1:]))  # noisy -> clean
    middle = GuidanceIntervals(unit="sigma", id=(sigmas[6], sigmas[3]))
    assert [("id" in middle.active(i, 10, s)) for i, s in enumerate(sigmas)] == [i in (3, 4, 5, 6) for i in range(10)]
    # rows_per_image: what the lead calls with a model folder (reads only the scheduler config)
    got = rows_per_image(tiny_model_dir, [None, {"id": [0, 0], "lmk": [0, 0], "emo": [0, 0]}, {"lmk": [0.0, 0.5]},
                                          {"unit": "sigma", "id": [sigmas[6], sigmas[3]]}], num_inference_steps=10, scheduler="ddim")
    assert got == [40, 10, 35, 34]
    assert rows_per_image(tiny_model_dir, [None], num_inference_steps=10, controls="id") == [20]
    assert tiny_pipe.unet_rows_per_image({"lmk": [0.0, 0.5]}, num_inference_steps=10, scheduler="ddim") == 35


@pytest.mark.parametrize("bad", [
    {"unit": "steps"}, {"lmk": [0.5, 0.2]}, {"emo": [0.0, 1.5]}, {"id": [-1.0, 0.5]}, {"id": [0.1]}, {"idd": [0, 1]},
    {"unit": "sigma", "id": [0.0, float("nan")]},
])
def test_bad_intervals_are_user_errors(tiny_pipe, conditions, bad):
    cond = conditions(1, tiny_pipe.landmark_image_size)
    with pytest.raises(FacegenError, match="guidance_intervals"):
        tiny_pipe(**cond, seeds=[0], num_inference_steps=1, guidance_intervals=bad)
