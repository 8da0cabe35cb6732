"""Generation throughput on a GPU: img/s, denoising ms per step, VAE ms per image and MFU.

At 512 px (SD1.5-size FaceCrafter pipeline with random weights, or a real model folder with --model),
for each dtype (fp16, bf16) x batch (4, 8, 16, 32) x guidance (full eq. 6, guidance intervals), with
PyTorch SDPA attention (the FaceCrafter processors call F.scaled_dot_product_attention; --sdpa picks a
backend) and channels_last UNet/VAE (--no-channels-last to compare); --compile adds torch.compile rows.
FLOPs are counted with torch.utils.flop_counter.FlopCounterMode over one full call per guidance setting
(denoising loop + VAE decode of one image; matmul / conv / attention FLOPs, attention counted on SDPA's
math backend), so MFU = FLOPs/img x img/s / peak.

    # on a cluster node (one GPU):
    .venv/bin/python benchmarks/gpu_throughput.py --device cuda [--model MODEL_DIR] [--compile] [--json out.json]
    # the CPU smoke run the test suite does (tiny preset, seconds):
    .venv/bin/python benchmarks/gpu_throughput.py --device cpu --tiny

img/s = batch / (denoising loop incl. condition encoding + VAE decode), median of --repeats timed calls
after one warm-up call. "ms/step" = mean wall time of one denoising step after the first (UNet call +
eq. 6 + scheduler), taken between step-end callbacks. Peak FLOP/s comes from --peak-tflops or the GPU
name (H100 / A100 / L40S / L4 / A10, dense tensor-core fp16/bf16); MFU is "n/a" without one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The guidance-interval setting benchmarked against full eq. 6 (benchmarks/guidance_intervals.py "mid").
INTERVALS: dict[str, Any] = {"id": [0.15, 0.66], "lmk": [0.0, 0.32], "emo": [0.3, 0.62]}
#: Dense fp16/bf16 tensor-core peak TFLOP/s by GPU name fragment (vendor datasheets, no sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "V100": 125.0}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_tflops(device: str, given: float | None) -> float | None:
    if given:
        return given
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for fragment, value in PEAK_TFLOPS.items():
            if fragment in name:
                return value
    return None


def sdpa_context(backend: str):
    if backend == "auto":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                        "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[backend])


def count_flops(pipe, cond: dict, steps: int, intervals: dict | None) -> tuple[float, float]:
    """(denoising FLOPs, VAE decode FLOPs) per image, counted by FlopCounterMode on a 1-image call.

    Attention runs on SDPA's math backend while counting: torch has FLOP formulas for the CUDA fused
    kernels but not for the CPU one, and the math backend's matmuls give the same count everywhere.
    (Per-image FLOPs do not depend on the batch: rows are per sample.)"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cond = {k: v[:1] for k, v in cond.items()}
    seeds = [0]
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as loop_counter:
        latents = pipe(**cond, seeds=seeds, num_inference_steps=steps, guidance_intervals=intervals, output_type="latent").images
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as vae_counter:
        pipe.decode(latents, "pt")
    return float(loop_counter.get_total_flops()), float(vae_counter.get_total_flops())


def time_config(pipe, cond: dict, seeds: list[int], steps: int, intervals: dict | None, device: str, repeats: int) -> dict[str, float]:
    """Median over `repeats` (after a warm-up) of loop seconds, VAE seconds and mean step seconds."""
    loops, vaes, step_means = [], [], []
    for round_index in range(repeats + 1):
        marks: list[float] = []

        def on_step_end(pipeline, i, t, tensors):
            _sync(device)
            marks.append(time.perf_counter())
            return tensors

        _sync(device)
        start = time.perf_counter()
        latents = pipe(**cond, seeds=seeds, num_inference_steps=steps, guidance_intervals=intervals,
                       output_type="latent", callback_on_step_end=on_step_end).images
        _sync(device)
        mid = time.perf_counter()
        pipe.decode(latents, "pt")
        _sync(device)
        end = time.perf_counter()
        if round_index:
            loops.append(mid - start)
            vaes.append(end - mid)
            step_means.append((marks[-1] - marks[0]) / max(len(marks) - 1, 1) if len(marks) > 1 else mid - start)
    return {"loop_s": statistics.median(loops), "vae_s": statistics.median(vaes), "step_s": statistics.median(step_means)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (64 px) instead of SD1.5 size: a smoke run")
    parser.add_argument("--model", help="a model folder to benchmark instead of random SD1.5-size weights")
    parser.add_argument("--dtypes", default=None, help="comma list of fp16, bf16, fp32 (default fp16,bf16; CPU: bf16)")
    parser.add_argument("--batches", default=None, help="comma list (default 4,8,16,32; --tiny: 2)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 25; --tiny: 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per configuration (default 3; --tiny: 1)")
    parser.add_argument("--intervals", default=json.dumps(INTERVALS), help="guidance intervals (JSON) compared with full eq. 6")
    parser.add_argument("--sdpa", default="auto", choices=["auto", "flash", "efficient", "cudnn", "math"])
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd UNet + VAE decoder")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s for MFU (default: from the GPU name)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default; --tiny on CPU: 1)")
    parser.add_argument("--json", help="also write the result rows here")
    args = parser.parse_args(argv)
    on_cpu = not args.device.startswith("cuda")
    if args.threads or (args.tiny and on_cpu):
        torch.set_num_threads(args.threads or 1)  # a tiny model runs fastest on one thread
    # CPUs have no fast fp16 (diffusers refuses fp16 pipelines on CPU): bf16 is the CPU default
    dtypes = (args.dtypes or ("bf16" if on_cpu else "fp16,bf16")).split(",")
    batches = [int(b) for b in (args.batches or ("2" if args.tiny else "4,8,16,32")).split(",")]
    steps = args.steps or (2 if args.tiny else 25)
    repeats = args.repeats or (1 if args.tiny else 3)
    intervals = json.loads(args.intervals)
    peak = peak_tflops(args.device, args.peak_tflops)

    from _bench_models import build_pipeline, random_conditions

    kind = "folder" if args.model else ("tiny" if args.tiny else "sd15")
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({gpu}); torch {torch.__version__}; model {args.model or kind}; {steps} steps; "
          f"SDPA backend {args.sdpa}; channels_last {args.channels_last}; peak {peak or 'n/a'} TFLOP/s", flush=True)
    header = (f"{'dtype':<5} {'compile':<7} {'batch':>5} {'guidance':<9} {'img/s':>8} {'ms/step':>9} {'VAE ms/img':>10} "
              f"{'rows/img':>8} {'TFLOP/img':>9} {'MFU':>6}")
    results: list[dict[str, Any]] = []
    flops_cache: dict[str, tuple[float, float]] = {}
    for dtype_name in dtypes:
        pipe = build_pipeline(kind, model_dir=args.model, device=args.device, dtype=DTYPES[dtype_name])
        if args.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        res = pipe.resolution
        print(f"\n{dtype_name}: {res} px, UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.0f}M params", flush=True)
        print(header, flush=True)
        for compiled in ([False, True] if args.compile else [False]):
            if compiled:
                pipe.unet.compile()
                pipe.vae.decoder.compile()
            for batch in batches:
                cond = random_conditions(batch, pipe.landmark_image_size, seed=batch)
                seeds = list(range(batch))
                for guidance_name, setting in (("eq6", None), ("intervals", intervals)):
                    row: dict[str, Any] = {"dtype": dtype_name, "compile": compiled, "batch": batch, "guidance": guidance_name,
                                           "intervals": setting, "steps": steps, "resolution": res, "device": gpu,
                                           "channels_last": args.channels_last, "sdpa": args.sdpa}
                    try:
                        with torch.inference_mode(), sdpa_context(args.sdpa):
                            if guidance_name not in flops_cache:
                                flops_cache[guidance_name] = count_flops(pipe, cond, steps, setting)
                            loop_flops, vae_flops = flops_cache[guidance_name]
                            timing = time_config(pipe, cond, seeds, steps, setting, args.device, repeats)
                    except torch.OutOfMemoryError:
                        print(f"{dtype_name:<5} {str(compiled):<7} {batch:>5} {guidance_name:<9} out of memory", flush=True)
                        torch.cuda.empty_cache()
                        continue
                    img_s = batch / (timing["loop_s"] + timing["vae_s"])
                    flops_img = loop_flops + vae_flops
                    mfu = flops_img * img_s / (peak * 1e12) if peak else None
                    rows_img = pipe.unet_rows_per_image(setting, steps)
                    row.update(img_s=img_s, step_ms=timing["step_s"] * 1e3, vae_ms_per_img=timing["vae_s"] * 1e3 / batch,
                               rows_per_img=rows_img, tflop_per_img=flops_img / 1e12, mfu=mfu)
                    results.append(row)
                    print(f"{dtype_name:<5} {str(compiled):<7} {batch:>5} {guidance_name:<9} {img_s:>8.2f} "
                          f"{row['step_ms']:>9.1f} {row['vae_ms_per_img']:>10.1f} {rows_img:>8} {row['tflop_per_img']:>9.3f} "
                          f"{'n/a' if mfu is None else f'{mfu:.1%}':>6}", flush=True)
        del pipe
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
