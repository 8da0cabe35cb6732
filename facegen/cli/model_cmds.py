"""`facegen model init|info|convert` and `facegen generate` (a quick look at a model's output,
:func:`facegen.runner.quicklook.generate_grid`)."""

from __future__ import annotations

from pathlib import Path

import typer

from facegen.errors import FacegenError


def register(app: typer.Typer) -> None:
    """Add the `model` group and the top-level `generate` command."""
    model_app = typer.Typer(help="Create and inspect FaceCrafter model folders.", no_args_is_help=True)
    model_app.command("init")(init)
    model_app.command("info")(info)
    model_app.command("convert")(convert)
    app.add_typer(model_app, name="model")
    app.command("generate")(generate)


def init(
    out: Path = typer.Option(..., "--out", "-o", help="New model folder to write (must not exist or be empty)."),
    preset: str | None = typer.Option(None, "--preset", help="Built-in preset: 'tiny' (random weights, CPU-fast; tests/demos)."),
    arc2face: Path | None = typer.Option(
        None, "--arc2face", help="Arc2Face download folder holding arc2face/ (UNet) and encoder/ (CLIP text encoder)."
    ),
    sd15: Path | None = typer.Option(
        None, "--sd15", help="Stable Diffusion 1.5 folder supplying vae/, tokenizer/ and scheduler/ (with --arc2face)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the random weights (tiny preset, fresh control modules)."),
) -> None:
    """Write a model folder: the tiny preset, or a real one assembled from Arc2Face + SD1.5 files."""
    from facegen.model.presets import assemble_arc2face_model, init_tiny_model

    if preset is not None and (arc2face is not None or sd15 is not None):
        raise FacegenError("give either --preset or --arc2face/--sd15, not both", where="model init")
    if preset is not None:
        if preset != "tiny":
            raise FacegenError(f"unknown preset {preset!r}; available: tiny", where="--preset")
        path = init_tiny_model(out, seed=seed)
    elif arc2face is not None and sd15 is not None:
        path = assemble_arc2face_model(arc2face, sd15, out, seed=seed)
    else:
        raise FacegenError("give --preset tiny, or both --arc2face DIR and --sd15 DIR", where="model init")
    typer.echo(f"wrote {path}")


def info(model_dir: Path = typer.Argument(..., help="Model folder (with facegen.json).")) -> None:
    """Print a model folder's description and parameter counts per module."""
    from facegen.model.info import LMK_BUDGET, LMK_EMO_BUDGET, count_model_parameters
    from facegen.model.loading import model_hash

    meta, counts = count_model_parameters(model_dir)
    typer.echo(f"model     {meta.name}  (format {meta.format} v{meta.format_version}, hash {model_hash(model_dir)})")
    typer.echo(f"images    {meta.resolution}x{meta.resolution} px, landmark images {meta.landmark_image_size} px")
    typer.echo(f"sampling  {meta.default_scheduler}, {meta.default_steps} steps, guidance {meta.guidance.model_dump()}")
    typer.echo("")
    typer.echo(f"{'part':<10}{'parameters':>14}{'token encoder':>16}{'cross-attn K/V':>16}")
    for c in counts:
        extra = f"{c.encoder:>16,}{c.kv:>16,}" if c.part in ("landmark", "emotion") else ""
        typer.echo(f"{c.part:<10}{c.total:>14,}{extra}")
    control = sum(c.total for c in counts if c.part in ("landmark", "emotion"))
    typer.echo(f"{'controls':<10}{control:>14,}  (landmark + emotion, incl. their K/V)")
    lmk = next(c.total for c in counts if c.part == "landmark")
    verdict = "within" if lmk <= LMK_BUDGET and control <= LMK_EMO_BUDGET else "OVER"
    typer.echo(
        f"budget    {verdict} the paper's Table-1 budget: landmark {lmk:,} <= {LMK_BUDGET:,}, "
        f"landmark + emotion {control:,} <= {LMK_EMO_BUDGET:,}"
    )


def convert(
    old: Path = typer.Argument(..., help="A model folder in the old layout (facegen.json format 1, no model_index.json)."),
    new: Path = typer.Argument(..., help="Where to write it in the diffusers layout (must not exist or be empty)."),
) -> None:
    """Rewrite an old model folder in the diffusers layout (`DiffusionPipeline.from_pretrained` loads it)."""
    from facegen.model.loading import convert_model_folder

    typer.echo(f"wrote {convert_model_folder(old, new)}")


def generate(
    model: Path = typer.Option(..., "--model", "-m", help="Model folder (see `facegen model init`)."),
    id_embedding: str = typer.Option(
        "random", "--id-embedding", help="'random' (seeded) or a .npy file with one (512,) or (N, 512) ArcFace embedding."
    ),
    landmarks: str | None = typer.Option(
        None,
        "--landmarks",
        help="'template' (neutral face mesh, posed by --yaw/--pitch/--roll) or a landmark PNG; omit for no landmark control.",
    ),
    yaw: float = typer.Option(0.0, "--yaw", help="Degrees, + = nose toward image right (with --landmarks template)."),
    pitch: float = typer.Option(0.0, "--pitch", help="Degrees, + = nose up (with --landmarks template)."),
    roll: float = typer.Option(0.0, "--roll", help="Degrees, + = clockwise (with --landmarks template)."),
    emotion: str | None = typer.Option(
        None, "--emotion", help="A class name (e.g. happy) or 10 numbers 'v,a,p_neutral,...,p_contempt'; omit for none."
    ),
    num_images: int = typer.Option(4, "--num-images", "-n", min=1, help="Number of images (one seed each)."),
    seed: int = typer.Option(0, "--seed", help="First seed; image i uses seed + i."),
    steps: int | None = typer.Option(None, "--steps", help="Denoising steps (default: the model's, 25)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="dpmpp (default), ddim, ddpm or dpmpp-sde (stochastic DPM++)."),
    w_id: float = typer.Option(2.5, "--w-id", help="Identity guidance weight (eq. 6)."),
    w_lmk: float = typer.Option(2.0, "--w-lmk", help="Landmark guidance weight (eq. 6)."),
    w_emo: float = typer.Option(2.0, "--w-emo", help="Emotion guidance weight (eq. 6)."),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="PNG file for the image grid."),
) -> None:
    """Generate a few images and save them side by side as one PNG grid."""
    from facegen.model.pipeline import GuidanceWeights
    from facegen.runner.quicklook import generate_grid

    look = generate_grid(
        model,
        id_embedding=id_embedding,
        landmarks=landmarks,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        emotion=emotion,
        num_images=num_images,
        seed=seed,
        steps=steps,
        scheduler=scheduler,
        guidance=GuidanceWeights(w_id, w_lmk, w_emo),
        out=out,
    )
    first = look.settings[0]
    typer.echo(f"wrote {out} ({num_images} images, {first['scheduler']}, {first['num_inference_steps']} steps)")
