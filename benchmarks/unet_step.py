"""Side-by-side cost of FaceCrafter's switched cross-attention and of batched eq.-6 guidance.

At SD1.5 size (random weights, fp32, CPU by default), in one run and interleaved round by round:
  1. FaceCrafter UNet forward with every branch on (a_LMK = a_EMO = 1) vs the plain Arc2Face UNet
     forward (stock diffusers attention) on the same inputs;
  2. one batched eq.-6 step (uncond, id, id+lmk, id+emo rows in ONE UNet call, then the guidance
     combination) vs the same four UNet calls made one after another.
Prints medians and ratios. Not a test: numbers depend on the machine and its load.

    .venv/bin/python benchmarks/unet_step.py [--latent 32] [--repeats 3] [--threads 0] [--clock wall|thread]
        [--forward-only]

`--clock thread --threads 1` times each call by the CPU time of the thread that runs it
(time.thread_time): with one torch thread every op runs there, so time the scheduler gives to other
processes is not counted and the ratio holds on a loaded machine (cache sharing still adds noise).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from facegen.model.attention import cross_attention_layers, install_facecrafter_attention
from facegen.model.info import sd15_budget
from facegen.model.pipeline import BranchPlan, GuidanceWeights, combine_guidance
from facegen.model.presets import REAL_LANDMARK_SIZE, SD15_UNET_CONFIG, build_control_modules, seeded


CLOCK = time.perf_counter


def timed(fn) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, default=32, help="latent side (64 = 512 px images)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per measurement (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="wall time, or the calling thread's CPU time (needs --threads 1)")
    parser.add_argument("--forward-only", action="store_true", help="only the FaceCrafter vs Arc2Face forward")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "thread":
        if torch.get_num_threads() != 1:
            parser.error("--clock thread measures one thread's CPU time: add --threads 1")
        global CLOCK
        CLOCK = time.thread_time

    t0 = time.perf_counter()
    with seeded(0):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG).eval()
        landmark, emotion = build_control_modules(cross_attention_layers(unet), REAL_LANDMARK_SIZE)
    landmark.eval()
    emotion.eval()
    print(f"built SD1.5-size UNet ({sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M params) "
          f"+ control modules in {time.perf_counter() - t0:.1f}s; torch threads {torch.get_num_threads()}")
    budget = sd15_budget()
    print(f"control parameters: LMK {budget.landmark_total:,}  EMO {budget.emotion_total:,}  total {budget.total:,}")

    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, args.latent, args.latent, generator=g)
    context = torch.randn(1, 77, 768, generator=g)
    uncond = torch.randn(1, 77, 768, generator=g)
    with torch.inference_mode():
        lmk = landmark(torch.rand(1, 3, REAL_LANDMARK_SIZE, REAL_LANDMARK_SIZE, generator=g))
        emo = emotion(torch.rand(1, 10, generator=g))
    t = torch.tensor(500)
    stock_processors = AttnProcessor2_0()

    def use_stock() -> None:
        unet.set_attn_processor(stock_processors)

    def use_facecrafter() -> None:
        install_facecrafter_attention(unet, landmark, emotion)

    def kwargs(rows: int, lmk_on: list[float], emo_on: list[float]) -> dict:
        return {
            "lmk_tokens": lmk.expand(rows, -1, -1),
            "emo_tokens": emo.expand(rows, -1, -1),
            "lmk_scale": torch.tensor(lmk_on),
            "emo_scale": torch.tensor(emo_on),
        }

    def arc2face_forward() -> None:
        unet(latents, t, encoder_hidden_states=context)

    def facecrafter_forward() -> None:
        unet(latents, t, encoder_hidden_states=context, cross_attention_kwargs=kwargs(1, [1.0], [1.0]))

    plan = BranchPlan.for_samples([True], [True])  # rows: uncond, id, id+lmk, id+emo
    weights = GuidanceWeights()

    def batched_step() -> None:
        x = latents.expand(4, -1, -1, -1)
        ctx = torch.cat([uncond, context, context, context])
        eps = unet(x, t, encoder_hidden_states=ctx, cross_attention_kwargs=kwargs(4, [0, 0, 1, 0], [0, 0, 0, 1])).sample
        combine_guidance(eps, plan, 1, weights)

    def sequential_step() -> None:
        rows = [(uncond, 0.0, 0.0), (context, 0.0, 0.0), (context, 1.0, 0.0), (context, 0.0, 1.0)]
        eps = torch.cat([
            unet(latents, t, encoder_hidden_states=ctx, cross_attention_kwargs=kwargs(1, [a], [b])).sample
            for ctx, a, b in rows
        ])
        combine_guidance(eps, plan, 1, weights)

    results: dict[str, list[float]] = {k: [] for k in ("arc2face", "facecrafter", "batched", "sequential")}
    with torch.inference_mode():
        for round_index in range(args.repeats + 1):
            use_stock()
            a = timed(arc2face_forward)
            use_facecrafter()
            f = timed(facecrafter_forward)
            b = float("nan") if args.forward_only else timed(batched_step)
            s = float("nan") if args.forward_only else timed(sequential_step)
            if round_index == 0:
                print(f"warm-up round: arc2face {a:.2f}s, facecrafter {f:.2f}s, batched {b:.2f}s, sequential {s:.2f}s")
                continue
            for key, value in zip(results, (a, f, b, s)):
                results[key].append(value)
            print(f"round {round_index}: arc2face {a:.2f}s, facecrafter {f:.2f}s, batched {b:.2f}s, sequential {s:.2f}s")

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nlatent 1x4x{args.latent}x{args.latent}, fp32, CPU, {args.clock} clock, median of {args.repeats} rounds")
    print(f"UNet forward: FaceCrafter (all branches on) {med['facecrafter']:.2f}s vs Arc2Face {med['arc2face']:.2f}s "
          f"-> ratio {med['facecrafter'] / med['arc2face']:.3f}")
    if args.forward_only:
        return
    print(f"eq.-6 step: batched (1 call, 4 rows) {med['batched']:.2f}s vs 4 sequential calls {med['sequential']:.2f}s "
          f"-> ratio {med['batched'] / med['sequential']:.3f}")


if __name__ == "__main__":
    main()
