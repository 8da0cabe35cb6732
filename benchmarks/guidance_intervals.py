"""Guidance intervals: UNet rows per image and CPU wall time per image at SD1.5 size, side by side.

For a few `sampler.guidance_intervals` settings (full eq. 6 first), in one run:
  1. UNet rows per image, counted with a forward hook on a full pipeline run of the tiny preset (the row
     plan does not depend on the model's size) and checked against the planned count at SD1.5's noise
     schedule;
  2. CPU wall time per image of the denoising loop at SD1.5 size (random weights, fp32): each distinct
     step plan (which branches are on) is one batched UNet call + the eq.-6 combination on the real
     pipeline code (`unet_rows` + `combine_guidance`), timed interleaved round by round (median); an
     image's time is the sum over its steps. Encoding the conditions and the VAE decode are the same
     for every setting and are left out.
Prints rows/image, the row ratio and the wall-time ratio vs full eq. 6. Not a test: numbers depend on
the machine and its load.

    .venv/bin/python benchmarks/guidance_intervals.py [--latent 64] [--steps 25] [--repeats 1] [--threads 0]

For the accuracy study (synthface): `rows_for_settings(model_dir, settings, steps)` below (or
`facegen.model.pipeline.rows_per_image`) gives rows/image for any interval settings of a model folder;
generate with `pipe(..., guidance_intervals=setting)` / the manifest's `sampler.guidance_intervals`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: name -> guidance intervals (None = eq. 6 at every step). Fractions: 0 = first (noisiest) step.
SETTINGS: dict[str, dict[str, Any] | None] = {
    "eq6-full": None,
    "sigma-paper": {"unit": "sigma", "id": [0.28, 5.42], "lmk": [0.28, 5.42], "emo": [0.28, 5.42]},
    "mid-wide": {"id": [0.1, 0.8], "lmk": [0.0, 0.5], "emo": [0.2, 0.7]},
    "mid": {"id": [0.15, 0.66], "lmk": [0.0, 0.32], "emo": [0.3, 0.62]},
    "mid-narrow": {"id": [0.2, 0.6], "lmk": [0.0, 0.25], "emo": [0.3, 0.55]},
    "no-guidance": {"id": [0.0, 0.0], "lmk": [0.0, 0.0], "emo": [0.0, 0.0]},
}


def rows_for_settings(
    model_dir: str | Path,
    settings: list[dict[str, Any] | None] | dict[str, dict[str, Any] | None],
    steps: int = 25,
    scheduler: str = "dpmpp",
    controls: str = "id+lmk+emo",
) -> dict[str, float] | list[float]:
    """UNet rows per image of each interval setting for a model folder (its noise schedule decides the
    sigma intervals). A dict of named settings gives a dict back; a list gives a list."""
    from facegen.model.pipeline import rows_per_image

    if isinstance(settings, dict):
        return dict(zip(settings, rows_per_image(model_dir, list(settings.values()), steps, scheduler, controls)))
    return rows_per_image(model_dir, settings, steps, scheduler, controls)


def counted_rows(settings: dict[str, dict[str, Any] | None], steps: int) -> dict[str, float]:
    """Rows per image counted with a UNet forward hook on full tiny-pipeline runs (4 images, every control)."""
    from _bench_models import build_pipeline, random_conditions

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model runs fastest on one thread (more threads mostly spin)
    pipe = build_pipeline("tiny")
    cond = random_conditions(4, pipe.landmark_image_size)
    rows: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    out: dict[str, float] = {}
    try:
        for name, setting in settings.items():
            rows.clear()
            result = pipe(**cond, seeds=[0, 1, 2, 3], num_inference_steps=steps, guidance_intervals=setting, output_type="latent")
            out[name] = sum(rows) / 4
            assert all(s["unet_rows"] == out[name] for s in result.settings)
    finally:
        hook.remove()
        torch.set_num_threads(threads)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (dpmpp, SD1.5 noise schedule)")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds over the step plans (after 1 warm-up call)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from _bench_models import build_pipeline, random_conditions

    from facegen.model.guidance import BranchPlan, GuidanceIntervals, combine_guidance, planned_rows, step_branches
    from facegen.model.presets import SD15_SCHEDULER_CONFIG
    from facegen.model.schedulers import scheduler_from_name, step_sigmas

    counted = counted_rows(SETTINGS, args.steps)
    sched = scheduler_from_name("dpmpp", SD15_SCHEDULER_CONFIG)
    sched.set_timesteps(args.steps)
    sigmas = step_sigmas(sched)
    step_plans = {name: step_branches(GuidanceIntervals.parse(s), args.steps, sigmas) for name, s in SETTINGS.items()}
    planned = {name: planned_rows([True], [True], GuidanceIntervals.parse(s), args.steps, sigmas)[0] for name, s in SETTINGS.items()}
    sd15_vs_tiny = "same" if all(planned[n] == counted[n] for n in SETTINGS) else "DIFFERENT (sigma intervals: other schedule)"

    t0 = time.perf_counter()
    pipe = build_pipeline("sd15", vae="tiny", text_layers=1)  # VAE / text encoder are not timed here
    print(f"built SD1.5-size pipeline ({sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.0f}M UNet params) "
          f"in {time.perf_counter() - t0:.0f}s; torch threads {torch.get_num_threads()}; latent {args.latent}, "
          f"{args.steps} dpmpp steps; rows planned at SD1.5 schedule vs counted on tiny: {sd15_vs_tiny}", flush=True)
    cond = random_conditions(1, pipe.landmark_image_size)
    with torch.inference_mode():
        enc = pipe.encode_conditions(cond["id_embeds"], cond["landmark_images"], cond["emotions"],
                                     torch.tensor([True]), torch.tensor([True]))
        latents = torch.randn(1, 4, args.latent, args.latent, generator=torch.Generator().manual_seed(0))
        t = sched.timesteps[args.steps // 2]
        weights = pipe.default_guidance
        plans = sorted({a for per_step in step_plans.values() for a in per_step}, key=lambda a: (-len(a), sorted(a)))

        def one_step(active: frozenset[str]) -> float:
            plan = BranchPlan.for_samples([True], [True], active)
            start = time.perf_counter()
            combine_guidance(pipe.unet_rows(latents, t, plan, enc).float(), plan, 1, weights)
            return time.perf_counter() - start

        one_step(frozenset())  # warm-up (one 1-row call: allocator, kernels, attention processors)
        times: dict[frozenset[str], list[float]] = {a: [] for a in plans}
        for round_index in range(1, args.repeats + 1):
            for active in plans:
                seconds = one_step(active)
                times[active].append(seconds)
                label = "+".join(sorted(active)) or "none"
                print(f"  round {round_index}: deltas on {label:<11} "
                      f"{len(BranchPlan.for_samples([True], [True], active).rows)} rows  {seconds:.2f}s", flush=True)
    step_time = {a: statistics.median(v) for a, v in times.items()}
    wall = {name: sum(step_time[a] for a in per_step) for name, per_step in step_plans.items()}

    full_rows, full_wall = counted["eq6-full"], wall["eq6-full"]
    print(f"\nper image (1 image, every control on), {args.steps} steps, SD1.5 UNet at latent {args.latent}, fp32 CPU")
    print(f"{'setting':<13} {'rows/img':>8} {'rows/step':>9} {'row ratio':>9} {'wall s/img':>10} {'wall ratio':>10}  intervals")
    for name, setting in SETTINGS.items():
        print(f"{name:<13} {counted[name]:>8.0f} {counted[name] / args.steps:>9.2f} {full_rows / counted[name]:>8.2f}x "
              f"{wall[name]:>10.1f} {full_wall / wall[name]:>9.2f}x  {setting}")


if __name__ == "__main__":
    main()
