"""The per-worker training loop, one recipe for every stage (what differs lives in `stages.STAGE_SPECS`)::

    run = StageRun(cfg, session)       # set up: model (+ restored weights), optimiser (+ state), data (+ cursor)
    for step in run.remaining_steps():
        row = run.train_step(step)     # grad_accum micro-batches, one optimiser step, one metrics row
        run.checkpoint(step, row)      # every `checkpoint_every` steps and at the end

`session` is where the recipe runs: :class:`RayTrainSession` inside a Ray Train worker (what
:func:`train_loop`, the `TorchTrainer` entry point, uses), or :class:`LocalSession` in-process (one CPU
worker, checkpoints in a local folder; tests and debugging).

Randomness is keyed, not streamed: the noise, timesteps and switch settings of micro-step ``m`` of
optimiser step ``s`` on rank ``r`` come from a generator seeded with ``(seed, s, m, r)``, and the data
stream is addressed by the global cursor, so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have (up to floating-point reduction order across workers).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facegen.train.checkpoint import (
    TrainState,
    load_ema,
    load_optimizer_state,
    load_weights,
    read_state,
    save_checkpoint,
)
from facegen.train.config import StageConfig
from facegen.train.ema import ParameterEMA
from facegen.train.losses import SETTING_NAMES, draw_switches, setting_counts
from facegen.train.stages import stage_spec

#: The losses a step reports (summed into `loss`; `reward_loss` is 0 without a consistency reward).
LOSS_TERMS = ("loss", "diffusion_loss", "ad_loss", "reward_loss", "reward_emotion", "reward_pose", "reward_identity")
METRIC_COLUMNS = (
    "step", "loss", "diffusion_loss", "ad_loss", "reward_loss", "reward_emotion", "reward_pose", "reward_identity", "lr", "images_per_s", "step_time_s", "epoch", "cursor",
    *(f"n_{name.replace('+', '_')}" for name in SETTING_NAMES),
)


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The CPU generator for one micro-step (see the module docstring)."""
    key = np.random.SeedSequence([int(seed), int(step), int(micro), int(rank)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(key) & 0x7FFF_FFFF_FFFF_FFFF)


def micro_switches(cfg: StageConfig, generator: torch.Generator) -> torch.Tensor:
    """(a_LMK, a_EMO) per sample of a micro-batch: random sets when mixed (`joint`), else the stage's fixed pair."""
    spec = stage_spec(cfg.stage)
    if spec.mixed:
        return draw_switches(cfg.items_per_batch, cfg.replicas, generator)
    return torch.tensor([spec.switches] * cfg.batch_size, dtype=torch.float32)


def learning_rate_factor(cfg: StageConfig, step: int) -> float:
    """lr multiplier at optimiser step `step` (1-based): linear warm-up, then constant or cosine decay."""
    if cfg.warmup_steps and step <= cfg.warmup_steps:
        return step / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


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


# ---- where the recipe runs ------------------------------------------------------------------------


class RayTrainSession:
    """A Ray Train worker: rank, device, DDP wrapping, the run's latest checkpoint, reports."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    @contextlib.contextmanager
    def restored(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as ckpt_dir:
            yield Path(ckpt_dir)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        if self.world == 1:
            return model
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)


class LocalSession:
    """One in-process CPU worker; checkpoints are copied to ``root/checkpoint_NNNNNN`` and the latest resumes."""

    rank, world, device = 0, 1, torch.device("cpu")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.reports: list[dict[str, Any]] = []

    def latest(self) -> Path | None:
        found = sorted(self.root.glob("checkpoint_*"))
        return found[-1] if found else None

    @contextlib.contextmanager
    def restored(self) -> Iterator[Path | None]:
        yield self.latest()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            shutil.copytree(checkpoint_dir, self.root / f"checkpoint_{int(metrics['step']):06d}")


# ---- set up: model + optimiser, data ------------------------------------------------------------


class StageModel:
    """The stage's Trainee (restored from a checkpoint if any), its DDP view, AdamW, the grad scaler and,
    with `ema_decay`, the moving average of the trained weights (restored too; a checkpoint without one
    starts it at the restored weights)."""

    def __init__(self, cfg: StageConfig, session, ckpt_dir: Path | None) -> None:
        from facegen.model.loading import load_components
        from facegen.train.trainee import Trainee
        from facegen.train.weights import apply_decoder, load_init_modules

        components = load_components(cfg.model, device="cpu")
        load_init_modules(components, cfg)
        apply_decoder(components, cfg)
        self.info = components.info
        self.trainee = Trainee(
            components, cfg.stage, cfg.lambda_ad, uncond_prob=cfg.uncond_prob, kl_weight=cfg.kl_weight,
            snr_gamma=cfg.snr_gamma, x0_weighting=cfg.x0_weighting,
            x0_weight_cap=cfg.x0_weight_cap, background_weight=cfg.background_weight,
            timestep_range=cfg.timestep_range, train_encoder=cfg.train_encoder,
            reconstruction_loss=cfg.reconstruction_loss, reward=cfg.reward,
            train_identity_encoder=cfg.encoder_lr > 0,
        )
        self.state = self._restore_weights(cfg, ckpt_dir)
        self.trainee.to(session.device)
        self.model = session.prepare(self.trainee)
        self.optimizer, self.params = build_optimizer(self.trainee, cfg)
        self.scaler = torch.amp.GradScaler(session.device.type, enabled=cfg.mixed_precision == "fp16")
        if ckpt_dir is not None:
            saved = load_optimizer_state(ckpt_dir)
            self.optimizer.load_state_dict(saved["optimizer"])
            if saved.get("scaler"):
                self.scaler.load_state_dict(saved["scaler"])
        self.ema = self._restore_ema(cfg, ckpt_dir)

    def _restore_ema(self, cfg: StageConfig, ckpt_dir: Path | None) -> ParameterEMA | None:
        if cfg.ema_decay is None:
            return None
        ema = ParameterEMA(self.trainee.trainable_state_dict(), cfg.ema_decay)
        saved = load_ema(ckpt_dir) if ckpt_dir is not None else None
        if saved is not None:
            ema.load_state_dict(saved, self.state.ema_updates if self.state else 0)
        return ema

    def _restore_weights(self, cfg: StageConfig, ckpt_dir: Path | None) -> TrainState | None:
        if ckpt_dir is None:
            return None
        state = read_state(ckpt_dir)
        if state.stage != cfg.stage:
            raise RuntimeError(f"run {cfg.run_name!r} holds a {state.stage} checkpoint, not {cfg.stage}")
        result = self.trainee.load_state_dict(load_weights(ckpt_dir), strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"checkpoint has unknown parameters, e.g. {result.unexpected_keys[0]}")
        return state

    def optimizer_step(self, cfg: StageConfig, step: int) -> None:
        if cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            if step <= cfg.ema_start:  # not averaged yet: the average starts at step ema_start's weights
                self.ema.reset(self.trainee.trainable_state_dict())
            else:
                self.ema.update(self.trainee.trainable_state_dict())

    def set_learning_rate(self, cfg: StageConfig, step: int) -> None:
        factor = learning_rate_factor(cfg, step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def save(self, directory: Path, state: TrainState) -> None:
        optimizer_state = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }
        ema = self.ema.state_dict() if self.ema is not None else None
        save_checkpoint(directory, self.trainee.trainable_state_dict(), optimizer_state, state, ema=ema)


def build_optimizer(trainee: torch.nn.Module, cfg: StageConfig) -> tuple[torch.optim.AdamW, list[torch.nn.Parameter]]:
    """AdamW over the trainable parameters: `lr` for everything but the identity encoder (`encoder_lr`)."""
    named = [(n, p) for n, p in trainee.named_parameters() if p.requires_grad]
    control = [p for n, p in named if not n.startswith("identity_encoder.")]
    encoder = [p for n, p in named if n.startswith("identity_encoder.")]
    groups = [{"params": control, "lr": cfg.lr, "base_lr": cfg.lr}]
    if encoder:
        groups.append({"params": encoder, "lr": cfg.encoder_lr, "base_lr": cfg.encoder_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    return optimizer, control + encoder


class StageData:
    """The worker's share of the pair stream from the global `cursor` on, as micro-batches of `StepInputs`."""

    def __init__(self, cfg: StageConfig, session, model_resolution: int, landmark_size: int, cursor: int) -> None:
        from facegen.train.data import PairStream, SampleBuilder, TarImages, crop_size, load_labels, training_resolution
        from facegen.train.pairs import build_pair_index

        self.cfg, self.rank, self.world, self.cursor = cfg, session.rank, session.world, cursor
        self.labels = load_labels(cfg.data)
        self.pairs = build_pair_index(self.labels, cfg.stage, cfg.pairing)
        self.stream = PairStream(len(self.labels), self.pairs, cfg.seed, self.rank, self.world)
        images = TarImages(cfg.data)
        crop = crop_size(images, self.labels.frame["key"].iloc[0])
        resolution, resize = training_resolution(cfg.resolution, model_resolution, crop)
        self.builder = SampleBuilder(self.labels, images, resolution, landmark_size, resize=resize)
        self.overfit_span = cfg.overfit_batches * cfg.items_per_batch * self.world

    def micro_batch(self, step: int, micro: int, device: torch.device):
        """(StepInputs, generator, switch-setting counts) of micro-step `micro` of optimiser step `step`."""
        from facegen.train.trainee import StepInputs

        cfg, items = self.cfg, self.cfg.items_per_batch
        key_step = ((step - 1) * cfg.grad_accum + micro) % cfg.overfit_batches if cfg.overfit_batches else step
        drawn, _ = self.stream.draw(self.cursor % self.overfit_span if self.overfit_span else self.cursor, items)
        self.cursor += items * self.world
        gen = step_generator(cfg.seed, key_step, micro if not cfg.overfit_batches else 0, self.rank)
        switches = micro_switches(cfg, gen)
        batch = self.builder.build(drawn)
        if cfg.replicas > 1:
            batch = batch.repeat_interleave(cfg.replicas)
        inputs = StepInputs(
            images=batch.images.to(device),
            id_embeds=batch.id_embeds.to(device),
            landmark_images=batch.landmark_images.to(device),
            emotions=batch.emotions.to(device),
            face_masks=batch.face_masks.to(device),
            switches=switches.to(device),
            groups=torch.arange(items).repeat_interleave(cfg.replicas).to(device),
            poses=batch.poses.to(device) if batch.poses is not None else None,
        )
        return inputs, gen, setting_counts(switches)

    def describe(self) -> str:
        frame = self.labels.frame
        b = self.builder
        return (
            f"{len(frame)} images, {frame['identity'].nunique()} identities, {self.pairs.fallbacks} targets without "
            f"a rule-satisfying partner (fallback used); {b.resolution} px" + (" (crops resized)" if b.resize else "")
        )


# ---- the recipe -----------------------------------------------------------------------------------


class StageRun:
    """One worker's run of a stage: set up, then `train_step` / `checkpoint` per step (module docstring)."""

    def __init__(self, cfg: StageConfig, session) -> None:
        from tqdm import tqdm

        torch.manual_seed(cfg.seed)
        self.cfg, self.session = cfg, session
        with session.restored() as ckpt_dir:
            self.model = StageModel(cfg, session, ckpt_dir)
        state = self.model.state
        self.start_step = state.step if state else 0
        info = self.model.info
        self.data = StageData(cfg, session, info.resolution, info.landmark_image_size, state.cursor if state else 0)
        rank0 = session.rank == 0
        self.log = MetricsLog(Path(cfg.output), self.start_step) if rank0 else None
        self.bar = tqdm(total=cfg.steps, initial=self.start_step, desc=cfg.stage, disable=not rank0, dynamic_ncols=True)
        if rank0:
            print(f"[facegen train] {cfg.stage}: {self.data.describe()}; effective batch {cfg.effective_batch} rows = "
                  f"{cfg.batch_size} per worker x {session.world} workers x {cfg.grad_accum} grad_accum ("
                  f"{cfg.effective_items} images); " + (f"resuming from step {self.start_step}" if self.start_step
                                                        else "starting at step 0"), flush=True)

    def remaining_steps(self) -> range:
        return range(self.start_step + 1, self.cfg.steps + 1)

    def train_step(self, step: int) -> dict[str, Any]:
        """grad_accum micro-batches (forward, backward), one optimiser step; returns the metrics row."""
        cfg, device = self.cfg, self.session.device
        t0 = time.perf_counter()
        self.model.set_learning_rate(cfg, step)
        totals, counts = torch.zeros(len(LOSS_TERMS)), dict.fromkeys(SETTING_NAMES, 0)
        for micro in range(cfg.grad_accum):
            inputs, gen, micro_counts = self.data.micro_batch(step, micro, device)
            out = self.forward_backward(inputs, gen, last=micro == cfg.grad_accum - 1)
            totals += torch.stack([out[k].detach().float().cpu() if k in out else torch.zeros(()) for k in LOSS_TERMS])
            counts = {k: counts[k] + micro_counts[k] for k in counts}
        self.model.optimizer_step(cfg, step)
        totals = _all_mean(totals / cfg.grad_accum, device)
        row = self.metrics_row(step, totals, counts, time.perf_counter() - t0)
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"loss is {row['loss']} at step {step}; lower the learning rate")
        if self.log is not None:
            self.log.write(row)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", ad=f"{row['ad_loss']:.4f}", ips=f"{row['images_per_s']:.1f}")
        return row

    def forward_backward(self, inputs, generator: torch.Generator, *, last: bool) -> dict[str, torch.Tensor]:
        cfg, device, model = self.cfg, self.session.device, self.model
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
        ddp = model.model is not model.trainee
        sync = contextlib.nullcontext() if (not ddp or last) else model.model.no_sync()
        with sync:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model.model(inputs, generator)
            model.scaler.scale(out["loss"] / cfg.grad_accum).backward()
        return out

    def metrics_row(self, step: int, totals: torch.Tensor, counts: dict[str, int], seconds: float) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "step": step,
            "loss": float(totals[0]),
            "diffusion_loss": float(totals[1]),
            "ad_loss": float(totals[2]),
            **{k: float(v) for k, v in zip(LOSS_TERMS[3:], totals[3:])},
            "lr": self.model.optimizer.param_groups[0]["lr"],
            "images_per_s": cfg.batch_size * cfg.grad_accum * self.session.world / seconds,
            "step_time_s": seconds,
            "epoch": self.data.cursor // len(self.data.labels),
            "cursor": self.data.cursor,
            **{f"n_{k.replace('+', '_')}": v for k, v in counts.items()},
        }

    def checkpoint(self, step: int, row: dict[str, Any]) -> None:
        """Every `checkpoint_every` steps and at the last: rank 0 writes the files, every rank reports."""
        cfg = self.cfg
        if step % cfg.checkpoint_every and step != cfg.steps:
            return
        metrics = {**row, "resumed_from": self.start_step}
        with tempfile.TemporaryDirectory(prefix="facegen-ckpt-") as tmp:
            ckpt_dir = None
            if self.session.rank == 0:
                ckpt_dir = Path(tmp)
                ema_updates = self.model.ema.updates if self.model.ema is not None else 0
                state = TrainState(cfg.stage, step, self.data.cursor, self.session.world, cfg.seed, ema_updates)
                self.model.save(ckpt_dir, state)
            self.session.report(metrics, ckpt_dir)

    def finish(self) -> None:
        if self.start_step >= self.cfg.steps:  # nothing left: report once so the run has a result
            self.session.report({"step": self.start_step, "resumed_from": self.start_step, "done": 1}, None)
        self.bar.close()


def run_recipe(cfg: StageConfig, session) -> None:
    """Set up, train the remaining steps with checkpoints, finish (the module docstring's recipe)."""
    run = StageRun(cfg, session)
    for step in run.remaining_steps():
        row = run.train_step(step)
        run.checkpoint(step, row)
    run.finish()


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry point; `loop_config = {"config": StageConfig as JSON-able dict}`."""
    run_recipe(StageConfig.model_validate(loop_config["config"]), RayTrainSession())
