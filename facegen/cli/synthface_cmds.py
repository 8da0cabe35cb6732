"""`facegen synthface ...`: the known-truth face domain (render datasets, untrained model, shipping)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

synthface_app = typer.Typer(
    help="synthface: rendered faces whose identity, pose, expression and emotion are known exactly.",
    no_args_is_help=True,
)


@synthface_app.command("render")
def render(
    n: int = typer.Option(..., "--n", help="Number of images to render."),
    out: str = typer.Option(..., "--out", help="Output folder (same layout as `facegen extract`)."),
    identities: int = typer.Option(1000, "--identities", help="Number of distinct identities."),
    identity_start: int = typer.Option(0, "--identity-start", help="First identity index (held-out sets use 1000000+)."),
    heldout: bool = typer.Option(False, "--heldout", help="Shorthand for --identity-start 1000000 (never trained on)."),
    seed: int = typer.Option(0, "--seed", help="Plan seed: row i depends only on (seed, i)."),
    size: int = typer.Option(64, "--size", help="Image size in pixels."),
    images_per_shard: int = typer.Option(1000, "--images-per-shard"),
    workers: int = typer.Option(2, "--workers", help="Ray actors (0 = render in this process)."),
) -> None:
    """Render N synthface images into shards + labels.parquet (+ truth_* columns); re-running resumes."""
    from facegen.synthface.dataset import RenderConfig, render_dataset
    from facegen.synthface.params import HELDOUT_START

    start = HELDOUT_START if heldout else identity_start
    config = RenderConfig(out, n, identities, identity_start=start, seed=seed, size=size,
                          images_per_shard=images_per_shard)
    distributor = None
    if workers > 0:
        from facegen.runner import RayDistributor

        distributor = RayDistributor(num_actors=workers, num_cpus=0.9)
    path = render_dataset(config, distributor)
    typer.echo(f"rendered {n} images of {identities} identities into {path}")


@synthface_app.command("init-model")
def init_model(
    out: Path = typer.Option(..., "--out", help="Where to write the untrained synthface model folder."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    autoencoder: str = typer.Option("kl4", "--autoencoder", help="'kl4': a learned 4x KL autoencoder "
                                    "(64x64x3 -> 16x16x4, trained by `train vae`); 'resample2': fixed 2x "
                                    "pixel-space latents (32x32x3) with a learned decoder refiner."),
) -> None:
    """Write the untrained synthface model (the first input of `make synthface-model`)."""
    from facegen.synthface.model import init_synthface_model

    init_synthface_model(out, seed=seed, overwrite=overwrite, autoencoder=autoencoder)
    typer.echo(f"wrote {out}")


@synthface_app.command("train-estimator")
def train_estimator_cmd(
    train: list[Path] = typer.Option(..., "--train", help="A `synthface render` folder to train on (repeat for more)."),
    heldout: Path = typer.Option(..., "--heldout", help="A `synthface render --heldout` folder to evaluate on."),
    out: Path = typer.Option(..., "--out", help="Where weights, checkpoint and estimator.json go."),
    steps: int = typer.Option(3000, "--steps"),
    batch_size: int = typer.Option(64, "--batch-size"),
    width: int = typer.Option(48, "--width", help="Channels of the first feature level (x2, x4 deeper)."),
    stem: str = typer.Option("strided", "--stem", help="'strided' (halves the resolution at once) or 'full' "
                             "(a convolution at full resolution first)."),
    soft_emotion: bool = typer.Option(False, "--soft-emotion", help="Fit the emotion head to the rendered "
                                      "expression's true posterior instead of the drawn class."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch threads (1 is fastest on a busy machine)."),
    ship: bool = typer.Option(False, "--ship", help="Also copy the weights into the package (the shipped estimator)."),
) -> None:
    """Train the synthface proxy estimator (pose, expression, emotion, V/A, identity); re-running resumes."""
    import shutil
    from dataclasses import asdict

    from facegen.synthface.estimator import INFO_FILE, WEIGHTS_FILE, shipped_weights_path
    from facegen.synthface.train_estimator import train_estimator

    from facegen.errors import FacegenError
    from facegen.synthface.estimator import STEMS

    if stem not in STEMS:
        raise FacegenError(f"must be one of {', '.join(STEMS)}", where="--stem")
    for name, value, least in (("--steps", steps, 1), ("--batch-size", batch_size, 1), ("--width", width, 8)):
        if value < least:
            raise FacegenError(f"must be at least {least}", where=name)
    metrics = train_estimator(train, heldout, out, steps=steps, batch_size=batch_size, width=width, stem=stem,
                              soft_emotion=soft_emotion, seed=seed, threads=threads, log=lambda line: typer.echo(line))
    for key, value in asdict(metrics).items():
        typer.echo(f"{key}: {value}")
    if ship:
        target = shipped_weights_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / WEIGHTS_FILE, target)
        shutil.copyfile(out / INFO_FILE, target.with_name(INFO_FILE))
        typer.echo(f"shipped the estimator to {target}")


@synthface_app.command("ship")
def ship(
    model: Path = typer.Option(..., "--model", help="The trained model folder (e.g. runs/synthface/joint/model)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Preset folder (default: the package's facegen/presets/synthface)."),
    configs: Path = typer.Option(Path("training/synthface"), "--configs", help="The stage configs the model was trained with."),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="A JSON file of measured metrics to record."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Store this sampler as the preset's own (dpmpp | ddim | ddpm | dpmpp-sde); "
        "default: keep the model's. A manifest's sampler.scheduler still chooses per run."),
    command: str = typer.Option("make synthface-model (scripts/build_synthface_model.sh)", "--command",
                                help="The command that rebuilds the model, recorded in its build info."),
) -> None:
    """Write a trained synthface model as the built-in `synthface` preset (fp16, <= 40 MB, with build info)."""
    import json

    import yaml

    from facegen.synthface.ship import preset_dir, ship_model

    build = {
        "command": command,
        "configs": {
            p.relative_to(configs).with_suffix("").as_posix(): yaml.safe_load(p.read_text())
            for p in sorted(configs.rglob("*.yaml"))
            # rounds not run yet, and one-off probes that are not part of the recipe
            if not {"planned", "probes"} & set(p.relative_to(configs).parts)
        },
        "metrics": json.loads(metrics.read_text()) if metrics else {},
    }
    if scheduler is not None:
        from facegen.model.schedulers import check_scheduler_name

        check_scheduler_name(scheduler, "--scheduler")
    path = ship_model(model, out or preset_dir(), build, scheduler=scheduler)
    typer.echo(f"shipped {model} as {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(synthface_app, name="synthface")
