"""`facegen train pretrain-lmk | pretrain-emo | joint`: the three FaceCrafter training stages on Ray Train."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

train_app = typer.Typer(
    help="Train FaceCrafter's control modules on extracted data (paper section 3.2) with Ray Train. "
    "Re-running a command with the same run name and storage path resumes from its latest checkpoint.",
    no_args_is_help=True,
)

_CONFIG = typer.Option(..., "--config", "-c", help="Stage config YAML, e.g. training/joint.yaml.")
_DATA = typer.Option(None, "--data", help="Override 'data': extracted training data folder (labels.parquet + shards/).")
_MODEL = typer.Option(None, "--model", help="Override 'model': input model folder.")
_OUT = typer.Option(None, "--out", help="Override 'output': folder for metrics and the exported model/.")
_STEPS = typer.Option(None, "--steps", help="Override 'steps': optimiser steps in total (a resumed run continues to this).")
_BATCH = typer.Option(None, "--batch-size", help="Override 'batch_size' (per worker per micro-step).")
_LR = typer.Option(None, "--lr", help="Override 'lr' (control modules and their K/V).")
_WORKERS = typer.Option(None, "--num-workers", help="Override 'ray.num_workers' (Ray Train workers).")
_GPU = typer.Option(None, "--gpu/--no-gpu", help="Override 'ray.use_gpu'.")
_CKPT = typer.Option(None, "--checkpoint-every", help="Override 'checkpoint_every' (steps between checkpoints).")
_NAME = typer.Option(None, "--run-name", help="Override 'run.name' (same name + storage path resumes).")
_STORAGE = typer.Option(None, "--storage-path", help="Override 'run.storage_path' (local folder or s3://...).")
_PRECISION = typer.Option(None, "--mixed-precision", help="Override 'mixed_precision': no, bf16 or fp16.")
_SEED = typer.Option(None, "--seed", help="Override 'seed'.")
_ADDRESS = typer.Option(
    None, "--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new private local Ray)."
)


def _run(
    stage: str,
    config: Path,
    data: Optional[str],
    model: Optional[str],
    out: Optional[str],
    steps: Optional[int],
    batch_size: Optional[int],
    lr: Optional[float],
    num_workers: Optional[int],
    gpu: Optional[bool],
    checkpoint_every: Optional[int],
    run_name: Optional[str],
    storage_path: Optional[str],
    mixed_precision: Optional[str],
    seed: Optional[int],
    address: Optional[str],
) -> None:
    from facegen.ray_session import connect_ray
    from facegen.train.config import check_inputs, load_stage_config
    from facegen.train.run import run_stage

    overrides = {
        "data": data, "model": model, "output": out, "steps": steps, "batch_size": batch_size, "lr": lr,
        "ray.num_workers": num_workers, "ray.use_gpu": gpu, "checkpoint_every": checkpoint_every,
        "run.name": run_name, "run.storage_path": storage_path, "mixed_precision": mixed_precision, "seed": seed,
    }
    cfg = load_stage_config(config, stage, overrides)
    check_inputs(cfg)  # a user error is one line before any Ray start-up
    connect_ray(address, quiet=False)  # the one policy (facegen.ray_session); workers' metrics reach the terminal
    result = run_stage(cfg, address=address)
    m = result.final_metrics
    loss = f"{m['loss']:.4f}" if "loss" in m else "n/a"
    typer.echo(f"{stage}: finished at step {m.get('step', '?')} (loss {loss}, resumed from step {m.get('resumed_from', 0)})")
    typer.echo(f"metrics: {result.metrics_path}")
    typer.echo(f"model:   {result.model_dir}")


def _make_command(stage: str, summary: str):
    def command(
        config: Path = _CONFIG,
        data: Optional[str] = _DATA,
        model: Optional[str] = _MODEL,
        out: Optional[str] = _OUT,
        steps: Optional[int] = _STEPS,
        batch_size: Optional[int] = _BATCH,
        lr: Optional[float] = _LR,
        num_workers: Optional[int] = _WORKERS,
        gpu: Optional[bool] = _GPU,
        checkpoint_every: Optional[int] = _CKPT,
        run_name: Optional[str] = _NAME,
        storage_path: Optional[str] = _STORAGE,
        mixed_precision: Optional[str] = _PRECISION,
        seed: Optional[int] = _SEED,
        address: Optional[str] = _ADDRESS,
    ) -> None:
        _run(
            stage, config, data, model, out, steps, batch_size, lr, num_workers, gpu, checkpoint_every,
            run_name, storage_path, mixed_precision, seed, address,
        )

    command.__doc__ = summary
    return command


train_app.command("vae")(
    _make_command("vae", "Train the autoencoder (reconstruction + KL) for a domain without a pre-trained VAE (synthface).")
)
train_app.command("base")(
    _make_command("base", "Train the identity-conditional base model (Arc2Face's role): UNet + ID encoder, with condition dropout.")
)
train_app.command("pretrain-lmk")(
    _make_command("pretrain-lmk", "Pre-train the landmark module + its K/V on same-identity pairs differing in pose/expression.")
)
train_app.command("pretrain-emo")(
    _make_command("pretrain-emo", "Pre-train the emotion module + its K/V on same-identity pairs with other expressions, same pose.")
)
train_app.command("joint")(
    _make_command("joint", "Joint disentanglement: both modules, their K/V and the identity encoder; mixed conditioning + AD loss.")
)


def register(app: typer.Typer) -> None:
    """Add the `train` command group."""
    app.add_typer(train_app, name="train")
