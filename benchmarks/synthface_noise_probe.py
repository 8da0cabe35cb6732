"""At which noise level does a synthface model decide the expression, and do its controls steer it there?
Measured on held-out renders whose truth is known. Not a test.

Two probes on the latents of N held-out renders (the model's own encoder, posterior mode):

- **one-shot**: noise the latent to timestep t, predict the clean latent in one UNet call per condition set
  (no guidance, no sampler), decode, measure with the proxy estimator. A control that knows the expression
  (the render's own landmark image, its emotion vector) should recover more of it than the identity alone;
  "noisy" decodes x_t / sqrt(alpha_bar_t) itself, the information the UNet was given.
- **SDEdit**: noise to fraction s of the schedule and finish sampling from there (DDIM, the model's eq. 6
  guidance), so the model has to redraw everything the noise hid.

Rows report emotion accuracy (chance 12.5%), expression-parameter RMSE and identity rank-1 among the
held-out identities, next to the autoencoder's own reconstruction (the ceiling of any generated image).

    .venv/bin/python benchmarks/synthface_noise_probe.py --model facegen/presets/synthface \\
        [--heldout runs/synthface/data/heldout] [--n 96] [--oneshot 50,100,200,300] [--sdedit 0.1,0.2,0.3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

CONDITION_SETS = {  # name: (context, landmark scale, emotion scale)
    "uncond": ("uncond", 0.0, 0.0),
    "id": ("id", 0.0, 0.0),
    "id+lmk": ("id", 1.0, 0.0),
    "id+emo": ("id", 0.0, 1.0),
    "id+lmk+emo": ("id", 1.0, 1.0),
}


class Probe:
    """Held-out renders, their latents, conditions and truth; `score` measures decoded latents."""

    def __init__(self, model: str, heldout: str, n: int, seed: int = 0) -> None:
        from facegen.model.pipeline import FaceCrafterPipeline
        from facegen.synthface.estimator import load_estimator
        from facegen.synthface.train_estimator import load_rendered
        from facegen.train.data import DrawnItem, SampleBuilder, TarImages, load_labels

        self.pipe = FaceCrafterPipeline.from_pretrained(model)
        labels = load_labels(heldout)
        frame = labels.frame
        images, table = load_rendered(heldout)
        index = {k: i for i, k in enumerate(table.column("key").to_pylist())}
        rows = np.random.default_rng(seed).choice(len(labels), n, replace=False)
        items = [DrawnItem(i, int(r), int(r)) for i, r in enumerate(rows)]  # each row's own landmarks
        self.batch = SampleBuilder(labels, TarImages(heldout), 64, 64).build(items)
        take = [index[k] for k in frame["key"].to_numpy()[rows]]
        self.images = images[take]
        self.expression = np.asarray(table.column("truth_expression").combine_chunks().flatten(), np.float32).reshape(-1, 9)[take]
        self.emotion = frame["emotion"].to_numpy()[rows]
        ids = frame["identity"].to_numpy()
        uniq = sorted(set(ids))
        first = [int(np.where(ids == u)[0][0]) for u in uniq]
        refs = labels.embeddings[first]
        self.refs = refs / np.linalg.norm(refs, axis=1, keepdims=True)
        self.identity = np.array([uniq.index(i) for i in ids[rows]])
        self.estimator = load_estimator()
        vae = self.pipe.vae
        self.scale = float(vae.config.scaling_factor)
        with torch.no_grad():
            x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float() / 127.5 - 1
            self.latents = vae.encode(x.to(vae.dtype)).latent_dist.mode().float() * self.scale
            every = torch.ones(n, dtype=torch.bool)
            self.conditions = self.pipe.encode_conditions(
                self.batch.id_embeds, self.batch.landmark_images, self.batch.emotions, every, every
            )

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        vae = self.pipe.vae
        with torch.no_grad():
            x = vae.decode((latents / self.scale).to(vae.dtype)).sample.float().clamp(-1, 1)
        return ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    def score(self, images: np.ndarray) -> dict[str, float]:
        m = self.estimator.measure(images)
        nearest = self.estimator.identity_similarity(m.embedding, self.refs).argmax(1)
        return {
            "emotion_accuracy": float(np.mean(m.emotion == self.emotion)),
            "expression_rmse": float(np.sqrt(np.mean((m.expression - self.expression) ** 2))),
            "identity_rank1": float(np.mean(nearest == self.identity)),
        }

    def noised(self, t: int, seed: int = 1) -> torch.Tensor:
        """x_t of eq. 4's forward process. (Not `scheduler.add_noise`: a DPM-Solver whose `set_timesteps` was
        never called looks t up in its descending default timesteps and noises to level 999 - t.)"""
        noise = torch.randn(self.latents.shape, generator=torch.Generator().manual_seed(seed))
        alpha_bar = self.pipe.scheduler.alphas_cumprod[int(t)].float()
        return alpha_bar.sqrt() * self.latents + (1 - alpha_bar).sqrt() * noise

    def one_shot(self, t: int, condition: str) -> torch.Tensor:
        """Predicted clean latent from x_t in one UNet call under one condition set."""
        context, lmk, emo = CONDITION_SETS[condition]
        n = len(self.latents)
        x_t = self.noised(t)
        kwargs = {
            "lmk_tokens": self.conditions["lmk"], "emo_tokens": self.conditions["emo"],
            "lmk_scale": torch.full((n,), lmk), "emo_scale": torch.full((n,), emo),
        }
        unet = self.pipe.unet
        with torch.no_grad():
            eps = unet(x_t.to(unet.dtype), torch.tensor(t), encoder_hidden_states=self.conditions[context],
                       cross_attention_kwargs=kwargs).sample.float()
        alpha_bar = self.pipe.scheduler.alphas_cumprod[t]
        return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()

    def sdedit(self, strength: float, condition: str, steps: int = 25) -> np.ndarray:
        """Sample from the render's latent noised to `strength` of the schedule (DDIM, eq. 6 defaults)."""
        _, lmk, emo = CONDITION_SETS[condition]
        n = len(self.latents)
        from facegen.model.schedulers import scheduler_from_name

        ddim = scheduler_from_name("ddim", self.pipe.scheduler.config)
        ddim.set_timesteps(steps)
        start = int(round((1 - strength) * steps))
        x_start = self.noised(int(ddim.timesteps[start])) if start < steps else self.latents

        def restart(pipe, i, t, tensors):  # replace the latents before the start step: DDIM keeps no history
            if start > 0 and i == start - 1:
                tensors["latents"] = x_start.to(tensors["latents"].dtype)
            return tensors

        out = self.pipe(
            self.batch.id_embeds, landmark_images=self.batch.landmark_images, emotions=self.batch.emotions,
            use_lmk=[lmk > 0] * n, use_emo=[emo > 0] * n, num_inference_steps=steps, scheduler="ddim",
            seeds=list(range(n)), output_type="np", progress=False, callback_on_step_end=restart,
        )
        return (np.asarray(out.images) * 255).round().clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a synthface model folder")
    parser.add_argument("--heldout", default="runs/synthface/data/heldout", help="a held-out `synthface render` folder")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--oneshot", default="50,100,200,300", help="timesteps (of 1000) for the one-shot probe")
    parser.add_argument("--sdedit", default="0.1,0.2,0.3", help="strengths for the SDEdit probe ('' = skip)")
    parser.add_argument("--conditions", default="uncond,id,id+lmk,id+emo,id+lmk+emo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = sorted(set(conditions) - set(CONDITION_SETS))
    if unknown:
        parser.error(f"--conditions: unknown {unknown}; choose from {', '.join(CONDITION_SETS)}")
    for flag, path, inside in (("--model", args.model, "model_index.json"), ("--heldout", args.heldout, "labels.parquet")):
        if not (Path(path) / inside).is_file():
            parser.error(f"{flag} {path}: no {inside} there; pass a synthface model folder / a held-out render folder")
    probe = Probe(args.model, args.heldout, args.n)
    rows: list[dict] = []

    def emit(probe_name: str, level: str, condition: str, images: np.ndarray) -> None:
        row = {"probe": probe_name, "level": level, "condition": condition, **probe.score(images)}
        rows.append(row)
        print(f"| {probe_name} | {level} | {condition} | {row['emotion_accuracy']:.3f} | {row['expression_rmse']:.3f} | "
              f"{row['identity_rank1']:.3f} |", flush=True)

    print(f"model {args.model}, {args.n} held-out renders")
    print("| probe | level | condition | emotion acc | expression RMSE | identity rank-1 |")
    print("|---|---|---|---|---|---|")
    emit("render", "-", "-", probe.images)
    emit("reconstruction", "-", "-", probe.decode(probe.latents))
    for t in (int(v) for v in args.oneshot.split(",") if v):
        alpha_bar = probe.pipe.scheduler.alphas_cumprod[t]
        emit("one-shot", f"t={t}", "noisy x_t", probe.decode(probe.noised(t) / alpha_bar.sqrt()))
        for condition in conditions:
            emit("one-shot", f"t={t}", condition, probe.decode(probe.one_shot(t, condition)))
    for s in (float(v) for v in args.sdedit.split(",") if v):
        for condition in ("id", "id+lmk+emo"):
            emit("sdedit", f"s={s}", condition, probe.sdedit(s, condition))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "n": args.n, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
