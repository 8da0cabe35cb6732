"""The per-worker Ray Train loop shared by the three stages.

Randomness is keyed, not streamed: the noise, timesteps and switch settings of micro-step ``m`` of
optimiser step ``s`` on rank ``r`` come from a generator seeded with ``(seed, s, m, r)``, and the data
stream is addressed by the global cursor, so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have (up to floating-point reduction order).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegen.train.checkpoint import (
    TrainState,
    load_optimizer_state,
    load_weights,
    read_state,
    save_checkpoint,
)
from facegen.train.config import StageConfig
from facegen.train.losses import SETTING_NAMES, draw_switches, setting_counts

METRIC_COLUMNS = (
    "step", "loss", "diffusion_loss", "ad_loss", "lr", "images_per_s", "step_time_s", "epoch", "cursor",
    *(f"n_{name.replace('+', '_')}" for name in SETTING_NAMES),
)


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The CPU generator for one micro-step (see the module docstring)."""
    key = np.random.SeedSequence([int(seed), int(step), int(micro), int(rank)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(key) & 0x7FFF_FFFF_FFFF_FFFF)


def micro_switches(cfg: StageConfig, generator: torch.Generator) -> torch.Tensor:
    """(a_LMK, a_EMO) per sample of a micro-batch: random sets in `joint`, fixed in pre-training."""
    if cfg.stage == "joint":
        return draw_switches(cfg.items_per_batch, cfg.replicas, generator)
    on = (1.0, 0.0) if cfg.stage == "pretrain-lmk" else (0.0, 1.0)
    return torch.tensor([on] * cfg.batch_size, dtype=torch.float32)


def learning_rate_factor(cfg: StageConfig, step: int) -> float:
    if cfg.warmup_steps and step <= cfg.warmup_steps:
        return step / cfg.warmup_steps
    return 1.0


class MetricsLog:
    """Rank 0's ``metrics.jsonl`` + ``metrics.csv``; rows after a resumed step are dropped first."""

    def __init__(self, out_dir: Path, resume_step: int) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.csv = out_dir / "metrics.jsonl", out_dir / "metrics.csv"
        kept = []
        if self.jsonl.is_file():
            for line in self.jsonl.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if row.get("step", 0) <= resume_step:
                    kept.append(row)
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
        with self.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        with self.csv.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore").writerow(row)


def _all_mean(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Mean over workers (on the device: NCCL reduces only CUDA tensors)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.to(device)
        dist.all_reduce(values)
        values = values.cpu() / dist.get_world_size()
    return values


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry point; `loop_config = {"config": StageConfig as JSON-able dict}`."""
    import ray.train
    import ray.train.torch
    from tqdm import tqdm

    from facegen.model.loading import load_components
    from facegen.train.data import PairStream, SampleBuilder, TarImages, load_labels
    from facegen.train.pairs import build_pair_index
    from facegen.train.trainee import StepInputs, Trainee
    from facegen.train.weights import load_init_modules

    cfg = StageConfig.model_validate(loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)

    components = load_components(cfg.model, device="cpu")
    load_init_modules(components, cfg)
    trainee = Trainee(components, cfg.stage, cfg.lambda_ad)

    start_step, cursor = 0, 0
    optimizer_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            state = read_state(Path(ckpt_dir))
            if state.stage != cfg.stage:
                raise RuntimeError(f"run {cfg.run_name!r} holds a {state.stage} checkpoint, not {cfg.stage}")
            missing = trainee.load_state_dict(load_weights(Path(ckpt_dir)), strict=False)
            if missing.unexpected_keys:
                raise RuntimeError(f"checkpoint has unknown parameters, e.g. {missing.unexpected_keys[0]}")
            optimizer_state = load_optimizer_state(Path(ckpt_dir))
            start_step, cursor = state.step, state.cursor

    trainee.to(device)
    use_ddp = world > 1
    model = (
        ray.train.torch.prepare_model(trainee, parallel_strategy_kwargs={"find_unused_parameters": True})
        if use_ddp
        else trainee
    )
    control = [p for n, p in trainee.named_parameters() if p.requires_grad and not n.startswith("identity_encoder.")]
    encoder = [p for n, p in trainee.named_parameters() if p.requires_grad and n.startswith("identity_encoder.")]
    groups = [{"params": control, "lr": cfg.lr, "base_lr": cfg.lr}]
    if encoder:
        groups.append({"params": encoder, "lr": cfg.encoder_lr, "base_lr": cfg.encoder_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.mixed_precision == "fp16")
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
        if "scaler" in optimizer_state and optimizer_state["scaler"]:
            scaler.load_state_dict(optimizer_state["scaler"])
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)

    labels = load_labels(cfg.data)
    pairs = build_pair_index(labels, cfg.stage, cfg.pairing)
    stream = PairStream(len(labels), pairs, cfg.seed, rank, world)
    resolution = cfg.resolution or components.info.resolution
    builder = SampleBuilder(labels, TarImages(cfg.data), resolution, components.info.landmark_image_size)
    items = cfg.items_per_batch
    overfit_span = cfg.overfit_batches * items * world

    log = MetricsLog(Path(cfg.output), start_step) if rank == 0 else None
    bar = tqdm(total=cfg.steps, initial=start_step, desc=cfg.stage, disable=rank != 0, dynamic_ncols=True)
    if rank == 0:
        print(
            f"[facegen train] {cfg.stage}: {len(labels)} images, {labels.frame['identity'].nunique()} identities, "
            f"{pairs.fallbacks} targets without a rule-satisfying partner (fallback used); "
            + (f"resuming from step {start_step}" if start_step else "starting at step 0"),
            flush=True,
        )
    if start_step >= cfg.steps:
        ray.train.report({"step": start_step, "resumed_from": start_step, "done": 1})
        return

    for step in range(start_step + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        factor = learning_rate_factor(cfg, step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        totals = torch.zeros(3)
        counts = dict.fromkeys(SETTING_NAMES, 0)
        for micro in range(cfg.grad_accum):
            key_step = ((step - 1) * cfg.grad_accum + micro) % cfg.overfit_batches if cfg.overfit_batches else step
            draw_cursor = cursor % overfit_span if overfit_span else cursor
            drawn, _ = stream.draw(draw_cursor, items)
            cursor += items * world
            gen = step_generator(cfg.seed, key_step, micro if not cfg.overfit_batches else 0, rank)
            switches = micro_switches(cfg, gen)
            batch = builder.build(drawn)
            if cfg.replicas > 1:
                batch = batch.repeat_interleave(cfg.replicas)
            for name, n in setting_counts(switches).items():
                counts[name] += n
            inputs = StepInputs(
                images=batch.images.to(device),
                id_embeds=batch.id_embeds.to(device),
                landmark_images=batch.landmark_images.to(device),
                emotions=batch.emotions.to(device),
                face_masks=batch.face_masks.to(device),
                switches=switches.to(device),
                groups=torch.arange(items).repeat_interleave(cfg.replicas).to(device),
            )
            sync = contextlib.nullcontext() if (not use_ddp or micro == cfg.grad_accum - 1) else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    out = model(inputs, gen)
                scaler.scale(out["loss"] / cfg.grad_accum).backward()
            totals += torch.stack([out["loss"].detach().float().cpu(), out["diffusion_loss"].float().cpu(), out["ad_loss"].float().cpu()])
        if cfg.max_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(control + encoder, cfg.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        totals = _all_mean(totals / cfg.grad_accum, device)
        dt = time.perf_counter() - t0
        images = cfg.batch_size * cfg.grad_accum * world
        row = {
            "step": step,
            "loss": float(totals[0]),
            "diffusion_loss": float(totals[1]),
            "ad_loss": float(totals[2]),
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": images / dt,
            "step_time_s": dt,
            "epoch": cursor // len(labels),
            "cursor": cursor,
            **{f"n_{k.replace('+', '_')}": v for k, v in counts.items()},
        }
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"loss is {row['loss']} at step {step}; lower the learning rate")
        if log is not None:
            log.write(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", ad=f"{row['ad_loss']:.4f}", ips=f"{row['images_per_s']:.1f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            metrics = {**row, "resumed_from": start_step}
            with tempfile.TemporaryDirectory(prefix="facegen-ckpt-") as tmp:
                ckpt = None
                if rank == 0:
                    save_checkpoint(
                        Path(tmp),
                        trainee.trainable_state_dict(),
                        {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else {}},
                        TrainState(cfg.stage, step, cursor, world, cfg.seed),
                    )
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=ckpt)
    bar.close()
