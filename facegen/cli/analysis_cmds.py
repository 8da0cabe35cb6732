"""`facegen extract`, `facegen verify` and `facegen weights check`: face analysis on real or generated images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MODELS_HELP = "Folder with bring-your-own weights (arcface.onnx, emonet_8.pth, enet_b0_8_va_mtl.onnx). Default: $FACEGEN_MODELS, else ~/.cache/facegen/models."
WORKERS_HELP = "Ray actors to run (0 = in this process, for debugging)."
RAY_ADDRESS_HELP = "Ray cluster to join (auto, ray://head:10001); default: $RAY_ADDRESS, else a new local Ray."


WEIGHTS_HELP = "Bring-your-own face-analysis weights (ArcFace, EmoNet, HSEmotion): what is expected where."
#: The verb's old name, one letter away from `facegen model` (model folders); kept hidden for old scripts.
DEPRECATED_WEIGHTS_ALIAS = "models"


def register(app: typer.Typer) -> None:
    """Add `extract`, `verify` and the `weights` group (plus its hidden deprecated alias `models`) to the app."""
    app.command("extract")(extract)
    app.command("verify")(verify)
    weights_app = typer.Typer(help=WEIGHTS_HELP, no_args_is_help=True)
    weights_app.command("check")(weights_check)
    app.add_typer(weights_app, name="weights")
    alias = typer.Typer(help=WEIGHTS_HELP, no_args_is_help=True, callback=_deprecated_alias_notice)
    alias.command("check")(weights_check)
    app.add_typer(alias, name=DEPRECATED_WEIGHTS_ALIAS, hidden=True)


def _deprecated_alias_notice() -> None:
    typer.echo(f"note: `facegen {DEPRECATED_WEIGHTS_ALIAS}` is deprecated; use `facegen weights` (same options)", err=True)


def _distributor(workers: int, cpus_per_worker: Optional[float], ray_address: Optional[str]):
    """`--workers 0`: in this process; N >= 1: N Ray actors on CPUs (face analysis does not use GPUs), each
    reserving the cluster's CPUs / N, at most 1, unless --cpus-per-worker says otherwise."""
    from facegen.errors import FacegenError
    from facegen.runner import make_distributor

    if workers < 0:
        raise FacegenError(f"--workers must be >= 0, got {workers}")
    distributor, _ = make_distributor(
        workers or None,
        in_process=workers == 0,
        address=ray_address,
        gpus_per_actor=0.0,
        cpus_per_actor=cpus_per_worker,
        max_cpus_per_actor=1.0,  # one MediaPipe/ONNX process each: never hoard a big cluster's CPUs
    )
    return distributor


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
    out: str = typer.Option(..., "--out", "-o", help="Output folder or fsspec URL (s3://bucket/data): shards/, labels.parquet, rejects.parquet."),
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
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Extract aligned faces + landmarks, pose, identity embedding, emotion and masks into training shards.

    Unreadable, truncated, non-image and face-less inputs are listed in OUT/rejects.parquet with a
    reason; the run continues and exits 0. Re-running resumes finished shards.
    """
    from facegen.analysis.extract import ExtractConfig, run_extract

    emotion = _emotion_backend(emotion_backend, models)
    config = ExtractConfig(
        input=str(input),
        out=out,
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
    summary = run_extract(config, _distributor(workers, cpus_per_worker, ray_address), progress=progress)
    typer.echo(f"emotion backend: {emotion}; identity backend: {identity_backend}")
    typer.echo(f"extracted {summary.extracted} of {summary.inputs} images into {summary.out} ({summary.seconds:.1f} s)")
    if summary.rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.reasons.items()))
        typer.echo(f"rejected {summary.rejected} ({reasons}); see {summary.out}/rejects.parquet")
    if summary.exemplar_bank:
        typer.echo(f"wrote exemplar bank {summary.exemplar_bank}")
    if summary.failed_shards:
        typer.echo(f"{len(summary.failed_shards)} shard(s) failed after retries; re-run to resume", err=True)
        raise typer.Exit(1)


def verify(
    dataset: str = typer.Argument(..., help="A `facegen balance` output folder or fsspec URL (shards/ + plan)."),
    identity_backend: str = typer.Option("auto", "--identity-backend", help="'arcface', 'dlib', 'synthface' or 'auto' (synthface for synthface datasets, else arcface if its weights are present, else dlib)."),
    emotion_backend: str = typer.Option("auto", "--emotion-backend", help="'emonet', 'hsemotion', 'synthface', 'none' or 'auto' (synthface for synthface datasets, else the first whose weights are present, else none)."),
    landmark_backend: str = typer.Option("auto", "--landmark-backend", help="'mediapipe', 'synthface' or 'auto' (synthface for datasets a synthface model made, else mediapipe)."),
    models: Optional[Path] = typer.Option(None, "--models", help=MODELS_HELP),
    reject: bool = typer.Option(False, "--reject", help="Mark samples outside the tolerances (column `rejected` + `reject_reason`) so loaders can skip them."),
    max_pose_error: float = typer.Option(15.0, "--max-pose-error", help="--reject: largest allowed |measured - planned| of yaw/pitch/roll (degrees)."),
    min_identity_similarity: Optional[float] = typer.Option(None, "--min-identity-similarity", help="--reject: smallest allowed similarity to the identity's reference (default: the backend's match threshold)."),
    workers: int = typer.Option(1, "--workers", help=WORKERS_HELP),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", help="Ray CPUs per actor (fractions allowed)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Re-measure pose, landmarks, emotion and identity on generated images; write DIR/verify.parquet and DIR/verify_report.json."""
    from facegen.analysis.verify import VerifyConfig, format_report, run_verify

    config = VerifyConfig(
        dataset=dataset,
        identity_backend=identity_backend,
        emotion_backend=emotion_backend,
        landmark_backend=landmark_backend,
        models_dir=str(models) if models else None,
        reject=reject,
        max_pose_error=max_pose_error,
        min_identity_similarity=min_identity_similarity,
    ).validate()
    result = run_verify(config, _distributor(workers, cpus_per_worker, ray_address), progress=progress)
    typer.echo(format_report(result.report))
    typer.echo(f"wrote {result.table_path} and {result.report_path}")


def weights_check(models: Optional[Path] = typer.Option(None, "--models", help=MODELS_HELP)) -> None:
    """List every analysis backend's weight files: where they are expected, whether present, what for."""
    from facegen.analysis.models import resolve_models_dir
    from facegen.analysis.registry import check_models

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
