"""`facegen extract`, `facegen verify` and `facegen models check`: face analysis on real or generated images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MODELS_HELP = "Folder with bring-your-own weights (arcface.onnx, emonet_8.pth, enet_b0_8_va_mtl.onnx). Default: $FACEGEN_MODELS, else ~/.cache/facegen/models."
WORKERS_HELP = "Ray actors to run (0 = in this process, for debugging)."


def register(app: typer.Typer) -> None:
    """Add `extract`, `verify` and the `models` group to the app."""
    app.command("extract")(extract)
    app.command("verify")(verify)
    models_app = typer.Typer(help="Analysis model weights: what is expected where.", no_args_is_help=True)
    models_app.command("check")(models_check)
    app.add_typer(models_app, name="models")


def _emotion_backend(name: str, models: Optional[Path]) -> str:
    """`auto`: the first emotion backend whose weights are present (emonet, hsemotion), else `none`."""
    if name != "auto":
        return name
    from facegen.analysis.models import resolve_models_dir
    from facegen.analysis.registry import backend_class

    root = resolve_models_dir(models)
    for candidate in ("emonet", "hsemotion"):
        if all(f.locate(root) for f in backend_class(candidate, "emotion").model_files()):
            return candidate
    return "none"


def extract(
    input: Path = typer.Option(..., "--input", "-i", help="Image folder (sub-folders = identities) or WebDataset .tar shard(s) / a folder of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: shards/, labels.parquet, rejects.parquet."),
    identity_from: str = typer.Option("folders", "--identity-from", help="Identity label from the image's 'folders' (relative folder name) or 'files' (file stem)."),
    exemplar_bank: Optional[Path] = typer.Option(None, "--exemplar-bank", help="Also write an exemplar bank Parquet (EXEMPLAR_SCHEMA) for the planner here; needs an emotion backend."),
    crop_size: int = typer.Option(256, "--crop-size", help="Side of the stored square face crops (pixels)."),
    identity_backend: str = typer.Option("arcface", "--identity-backend", help="'arcface' (512-d, needs arcface.onnx) or 'none' (zero embeddings: landmark/emotion-only runs, not for training)."),
    emotion_backend: str = typer.Option("auto", "--emotion-backend", help="'emonet', 'hsemotion', 'none' (uniform probs, NaN valence/arousal, emotion -1) or 'auto' (first whose weights are present, else none)."),
    models: Optional[Path] = typer.Option(None, "--models", help=MODELS_HELP),
    masks: bool = typer.Option(True, "--masks/--no-masks", help="Write KEY.mask.png face-oval masks."),
    landmark_images: bool = typer.Option(False, "--landmark-images/--no-landmark-images", help="Write KEY.lmk.png rendered landmark images."),
    images_per_shard: int = typer.Option(500, "--images-per-shard", help="Input images per output shard."),
    workers: int = typer.Option(1, "--workers", help=WORKERS_HELP),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", help="Ray CPUs per actor (fractions allowed); default fits the machine."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster instead of starting a local one."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Extract aligned faces + landmarks, pose, identity embedding, emotion and masks into training shards.

    Unreadable, truncated, non-image and face-less inputs are listed in OUT/rejects.parquet with a
    reason; the run continues and exits 0. Re-running resumes finished shards.
    """
    from facegen.analysis.extract import ExtractConfig, make_distributor, run_extract

    emotion = _emotion_backend(emotion_backend, models)
    config = ExtractConfig(
        input=str(input),
        out=str(out),
        identity_from=identity_from,
        crop_size=crop_size,
        identity_backend=identity_backend,
        emotion_backend=emotion,
        models_dir=str(models) if models else None,
        masks=masks,
        landmark_images=landmark_images,
        images_per_shard=images_per_shard,
        exemplar_bank=str(exemplar_bank) if exemplar_bank else None,
    ).validate()
    summary = run_extract(config, make_distributor(workers, cpus_per_worker, ray_address), progress=progress)
    typer.echo(f"emotion backend: {emotion}; identity backend: {identity_backend}")
    typer.echo(f"extracted {summary.extracted} of {summary.inputs} images into {summary.out} ({summary.seconds:.1f} s)")
    if summary.rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.reasons.items()))
        typer.echo(f"rejected {summary.rejected} ({reasons}); see {summary.out / 'rejects.parquet'}")
    if summary.exemplar_bank:
        typer.echo(f"wrote exemplar bank {summary.exemplar_bank}")
    if summary.failed_shards:
        typer.echo(f"{len(summary.failed_shards)} shard(s) failed after retries; re-run to resume", err=True)
        raise typer.Exit(1)


def verify(
    dataset: Path = typer.Argument(..., help="A `facegen balance` output folder (shards/ + plan)."),
    identity_backend: str = typer.Option("auto", "--identity-backend", help="'arcface', 'dlib' or 'auto' (arcface if its weights are present, else dlib)."),
    emotion_backend: str = typer.Option("auto", "--emotion-backend", help="'emonet', 'hsemotion', 'none' or 'auto' (first whose weights are present, else none)."),
    models: Optional[Path] = typer.Option(None, "--models", help=MODELS_HELP),
    reject: bool = typer.Option(False, "--reject", help="Mark samples outside the tolerances (column `rejected` + `reject_reason`) so loaders can skip them."),
    max_pose_error: float = typer.Option(15.0, "--max-pose-error", help="--reject: largest allowed |measured - planned| of yaw/pitch/roll (degrees)."),
    min_identity_similarity: Optional[float] = typer.Option(None, "--min-identity-similarity", help="--reject: smallest allowed similarity to the identity's reference (default: the backend's match threshold)."),
    workers: int = typer.Option(1, "--workers", help=WORKERS_HELP),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", help="Ray CPUs per actor (fractions allowed)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster instead of starting a local one."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Re-measure pose, landmarks, emotion and identity on generated images; write DIR/verify.parquet and DIR/verify_report.json."""
    from facegen.analysis.extract import make_distributor
    from facegen.analysis.verify import VerifyConfig, format_report, run_verify

    config = VerifyConfig(
        dataset=str(dataset),
        identity_backend=identity_backend,
        emotion_backend=_emotion_backend(emotion_backend, models),
        models_dir=str(models) if models else None,
        reject=reject,
        max_pose_error=max_pose_error,
        min_identity_similarity=min_identity_similarity,
    ).validate()
    result = run_verify(config, make_distributor(workers, cpus_per_worker, ray_address), progress=progress)
    typer.echo(format_report(result.report))
    typer.echo(f"wrote {result.table_path} and {result.report_path}")


def models_check(models: Optional[Path] = typer.Option(None, "--models", help=MODELS_HELP)) -> None:
    """List every analysis backend's weight files: where they are expected, whether present, what for."""
    from facegen.analysis.models import check_models, resolve_models_dir

    root = resolve_models_dir(models)
    typer.echo(f"models folder: {root}{'' if root.is_dir() else '  (does not exist)'}")
    rows = [("backend", "job", "status", "file", "used for")]
    for status in check_models(root):
        f = status.file
        if status.present:
            where = str(status.path)
        elif f.shipped_by:
            where = f"{f.candidates[0]} (pip install {f.shipped_by})"
        else:
            where = " | ".join(f.candidates)
        rows.append((f.backend, f.kind, "present" if status.present else "MISSING", where, f.purpose))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        typer.echo("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
