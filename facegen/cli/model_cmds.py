"""`facegen model init|info` and `facegen generate` (a quick look at a model's output)."""

from __future__ import annotations

from pathlib import Path

import typer

from facegen.errors import FacegenError


def register(app: typer.Typer) -> None:
    """Add the `model` group and the top-level `generate` command."""
    model_app = typer.Typer(help="Create and inspect FaceCrafter model folders.", no_args_is_help=True)
    model_app.command("init")(init)
    model_app.command("info")(info)
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
    scheduler: str | None = typer.Option(None, "--scheduler", help="dpmpp (default), ddim or ddpm."),
    w_id: float = typer.Option(2.5, "--w-id", help="Identity guidance weight (eq. 6)."),
    w_lmk: float = typer.Option(2.0, "--w-lmk", help="Landmark guidance weight (eq. 6)."),
    w_emo: float = typer.Option(2.0, "--w-emo", help="Emotion guidance weight (eq. 6)."),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="PNG file for the image grid."),
) -> None:
    """Generate a few images and save them side by side as one PNG grid."""
    import numpy as np
    import torch

    from facegen.model.pipeline import SCHEDULERS, FaceCrafterPipeline, GuidanceWeights

    if scheduler is not None and scheduler not in SCHEDULERS:
        raise FacegenError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}", where="--scheduler")
    if out.suffix.lower() != ".png":
        raise FacegenError("the grid is written as PNG; give a .png path", where="--out")
    pipe = FaceCrafterPipeline.from_pretrained(model)
    n = num_images
    ids = torch.from_numpy(_id_embeddings(id_embedding, n, seed))
    lmk = None if landmarks is None else _landmark_images(landmarks, pipe.landmark_image_size, yaw, pitch, roll)
    emo = None if emotion is None else torch.from_numpy(_emotion_vector(emotion))
    result = pipe(
        ids,
        landmark_images=None if lmk is None else lmk.expand(n, -1, -1, -1),
        emotions=None if emo is None else emo.expand(n, -1),
        seeds=[seed + i for i in range(n)],
        num_inference_steps=steps,
        guidance=GuidanceWeights(w_id, w_lmk, w_emo),
        scheduler=scheduler,  # type: ignore[arg-type]
        progress=True,
    )
    grid = np.concatenate(list(result.images), axis=1)
    if lmk is not None:
        cond = (lmk[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        grid = np.concatenate([_resize(cond, grid.shape[0]), grid], axis=1)
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    typer.echo(f"wrote {out} ({n} images, {result.settings[0]['scheduler']}, {result.settings[0]['num_inference_steps']} steps)")


def _id_embeddings(spec: str, n: int, seed: int):
    import numpy as np

    if spec == "random":
        emb = np.random.default_rng(seed).standard_normal((n, 512)).astype(np.float32)
    else:
        path = Path(spec)
        if not path.is_file():
            raise FacegenError("no such file (give a .npy embedding or 'random')", where=str(path))
        try:
            emb = np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise FacegenError(f"not a numeric .npy array ({exc})", where=str(path)) from None
        emb = emb.reshape(1, -1) if emb.ndim == 1 else emb
        if emb.ndim != 2 or emb.shape[1] != 512:
            raise FacegenError(f"expected shape (512,) or (N, 512); got {emb.shape}", where=str(path))
        emb = np.resize(emb, (n, 512)) if len(emb) != n else emb
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _landmark_images(spec: str, size: int, yaw: float, pitch: float, roll: float):
    import numpy as np
    import torch

    if spec == "template":
        from facegen.conditions.render import posed_landmarks, render_landmark_images
        from facegen.conditions.template import neutral_template

        base = neutral_template()[None].astype(np.float32)
        posed = posed_landmarks(base, np.array([yaw]), np.array([pitch]), np.array([roll]))
        image = render_landmark_images(posed, size)[0]
    else:
        from PIL import Image

        path = Path(spec)
        if not path.is_file():
            raise FacegenError("no such file (give a landmark PNG or 'template')", where=str(path))
        image = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _emotion_vector(spec: str):
    import numpy as np

    from facegen.conditions.emotions import VA_PRIOR, class_index, peaked_probs
    from facegen.labels import EMOTION_NAMES, EMOTION_VECTOR_DIM

    if "," in spec:
        try:
            values = np.array([float(v) for v in spec.split(",")], dtype=np.float32)
        except ValueError:
            raise FacegenError("expected comma-separated numbers", where="--emotion") from None
        if values.shape != (EMOTION_VECTOR_DIM,):
            raise FacegenError(f"expected {EMOTION_VECTOR_DIM} numbers (v, a, 8 probabilities)", where="--emotion")
        return values[None]
    try:
        index = class_index(spec)
    except ValueError as exc:
        raise FacegenError(str(exc), where="--emotion") from None
    prior = VA_PRIOR[EMOTION_NAMES[index]]
    vector = np.concatenate([[prior.valence, prior.arousal], peaked_probs()[index]]).astype(np.float32)
    return vector[None]


def _resize(image, height: int):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((height, height), Image.BILINEAR))
