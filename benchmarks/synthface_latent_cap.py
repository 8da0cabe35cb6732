"""What a latent space lets a generated synthface image show at best. Not a test.

A diffusion model can only produce what its decoder can draw, so the proxy estimator's accuracy on
decode(encode(render)) of held-out renders is a ceiling ("cap") for any UNet on that latent space. This
prints, side by side on the same renders: the renders themselves, each model folder's autoencoder
(`--model`, repeatable; a learned KL autoencoder or the fixed 2x `ResampleAutoencoder`, with its refiner
if trained) and plain area-down / bilinear-up resampling at 32 and 48 px (no model at all).

    .venv/bin/python benchmarks/synthface_latent_cap.py --heldout runs/synthface/data/heldout \
        --model facegen/presets/synthface --model runs/synthface/pixel/refiner/model [--md out.md]

Held-out renders: `facegen synthface render --n 2000 --identities 100 --heldout --seed 1 --out DIR`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

COLUMNS = [("emotion_accuracy", "emotion acc.", "pct"), ("identity_rank1_observable", "ID rank-1 (observable)", "pct"),
           ("identity_rank1", "ID rank-1 (plain)", "pct"), ("yaw_rmse", "yaw RMSE", 2),
           ("expression_rmse", "expr. RMSE", 3), ("pixel_rmse", "pixel RMSE", 4)]


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def reconstructions(vae, images, batch: int = 100):
    """uint8 (N, H, W, 3) -> decode(encode(x)) as uint8, through `vae` (mean latents, no sampling)."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            z = vae.encode(x).latent_dist.mean
            y = vae.decode(z).sample.clamp(-1, 1)
            out.append(((y + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def resampled(images, size: int):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    d = F.interpolate(x, size=(size, size), mode="area")
    u = F.interpolate(d, size=images.shape[1:3], mode="bilinear", align_corners=False)
    return u.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=Path, required=True, help="a `synthface render --heldout` folder")
    parser.add_argument("--model", type=Path, action="append", default=[], help="model folder (repeatable)")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--md", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    if not (args.heldout / "labels.parquet").is_file():
        _fail(f"--heldout: {args.heldout} has no labels.parquet; render one with `facegen synthface render --heldout`")
    for m in args.model:
        if not (m / "model_index.json").is_file() and not (m / "facegen.json").is_file():
            _fail(f"--model: {m} is not a facegen model folder")

    import numpy as np
    import torch

    from facegen.model.loading import load_components
    from facegen.synthface.estimator import load_estimator
    from facegen.synthface.train_estimator import evaluate_estimator, load_rendered

    torch.set_num_threads(2)
    images, table = load_rendered(args.heldout, limit=args.limit)
    runner = load_estimator()
    variants = [("renders themselves", images), ("area 48 px -> bilinear 64", resampled(images, 48)),
                ("area 32 px -> bilinear 64", resampled(images, 32))]
    for m in args.model:
        vae = load_components(m).vae.float().eval()
        name = f"{m} ({type(vae).__name__}, {vae.config.get('factor') or 2 ** (len(vae.config.block_out_channels) - 1)}x)"
        t0 = time.perf_counter()
        recon = reconstructions(vae, images)
        print(f"{name}: {len(images) / (time.perf_counter() - t0):.0f} images/s encode+decode", flush=True)
        variants.append((name, recon))
    rows = []
    for name, x in variants:
        metrics = vars(evaluate_estimator(runner, x, table))
        diff = (x.astype(np.float32) - images.astype(np.float32)) / 255.0
        metrics["pixel_rmse"] = float(np.sqrt((diff**2).mean()))
        rows.append((name, metrics))
    header = "| input | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [f"{len(images)} held-out renders ({args.heldout}), synthface proxy estimator.", "", header,
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows:
        cells = [f"{100 * m[k]:.1f}%" if fmt == "pct" else f"{m[k]:.{fmt}f}" for k, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(f"# The latent space's cap (`benchmarks/synthface_latent_cap.py`)\n\n{text}\n")


if __name__ == "__main__":
    main()
