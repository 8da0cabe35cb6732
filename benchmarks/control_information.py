"""Does a control branch carry information the UNet uses? Denoising loss with the branch on, off, and on
with the condition shuffled across the batch, on the same images, noise and timesteps. Not a test.

A landmark (or emotion) module that controls anything lowers eq. 4's loss when its own condition is
given, and a shuffled condition (another image's landmarks) raises it again; "on == off == shuffled"
means the branch is inert, whatever the attention maps look like. Cheap (a few forward passes), so it
can watch a training run long before sampling-based measurements (the synthface study) move.

    .venv/bin/python benchmarks/control_information.py --model runs/synthface/round2/joint/model \\
        --data runs/synthface/data/train [--batches 4] [--batch-size 64] [--branches landmark,emotion]
"""

from __future__ import annotations

import argparse
import tempfile

import torch


def main() -> None:
    from facegen.train.config import StageConfig
    from facegen.train.loop import LocalSession, StageRun

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder")
    parser.add_argument("--data", required=True, help="training data (a `facegen extract` / `synthface render` folder)")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--branches", default="landmark,emotion", help="comma-separated: landmark, emotion")
    parser.add_argument(
        "--bands", default="0-1,0-0.3,0.3-0.7,0.7-1",
        help="timestep bands as fractions of the schedule; a branch's information sits in some bands only "
        "(pose at high noise, where eq. 4's loss is small), which the all-t average hides",
    )
    args = parser.parse_args()
    bands = [tuple(float(x) for x in band.split("-")) for band in args.bands.split(",")]
    torch.set_num_threads(args.threads)

    results: dict[str, dict[str, list[float]]] = {}
    for branch, stage, column in (("landmark", "pretrain-lmk", 0), ("emotion", "pretrain-emo", 1)):
        if branch not in args.branches.split(","):
            continue
        cfg = StageConfig.model_validate({
            "stage": stage, "data": args.data, "model": args.model, "output": tempfile.mkdtemp(),
            "steps": 1, "batch_size": args.batch_size, "seed": 0,
        })
        run = StageRun(cfg, LocalSession(tempfile.mkdtemp()))
        trainee = run.model.trainee.eval()
        for band in bands:
            losses = band_losses(trainee, run, branch, column, band, args.batches, args.batch_size)
            results[f"{branch} t{band[0]}-{band[1]}"] = losses
            mean = {k: sum(v) / len(v) for k, v in losses.items()}
            print(f"{branch:9s} t {band[0]:.1f}-{band[1]:.1f}  loss on {mean['on']:.5f}  off {mean['off']:.5f}  "
                  f"shuffled {mean['shuffled']:.5f}  -> on/off {mean['on'] / mean['off']:.4f}, "
                  f"shuffled/on {mean['shuffled'] / mean['on']:.4f} ({args.batches} x {args.batch_size} images)",
                  flush=True)


def band_losses(trainee, run, branch: str, column: int, band: tuple[float, float], batches: int, batch_size: int):
    """Plain eq. 4 loss with the branch on / off / shuffled, timesteps drawn from `band` (same draws for all)."""
    from facegen.train.loop import step_generator
    from facegen.train.trainee import StepInputs

    trainee.timestep_range = band
    trainee.x0_weighting, trainee.snr_gamma, trainee.background_weight = False, None, 1.0
    losses: dict[str, list[float]] = {"on": [], "off": [], "shuffled": []}
    with torch.no_grad():
        for b in range(batches):
            inputs, _, _ = run.data.micro_batch(10_000 + b, 0, torch.device("cpu"))
            perm = torch.randperm(batch_size, generator=torch.Generator().manual_seed(b))
            off = inputs.switches.clone()
            off[:, column] = 0
            field = "landmark_images" if branch == "landmark" else "emotions"
            variants = {
                "on": inputs,
                "off": StepInputs(**{**inputs.__dict__, "switches": off}),
                "shuffled": StepInputs(**{**inputs.__dict__, field: getattr(inputs, field)[perm]}),
            }
            for name, x in variants.items():
                out = trainee(x, step_generator(0, 10_000 + b, 0, 0))  # same noise and timesteps
                losses[name].append(float(out["diffusion_loss"]))
    return losses

if __name__ == "__main__":
    main()
