"""`facegen balance`, `inspect`, `export imagefolder` and `submit`: thin wrappers over facegen.runner/data."""

from __future__ import annotations

import subprocess

from pathlib import Path
from typing import Annotated, Optional

import typer

from facegen.errors import FacegenError

RUN_INCOMPLETE = 1  # exit code when shards or samples failed (user errors exit 2)


def balance(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Manifest YAML: what to generate.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Dataset folder or fsspec URL (s3://bucket/ds). Re-running resumes.")],
    model: Annotated[Optional[str], typer.Option(help="Model folder (or `tiny`) replacing the manifest's `model:`, e.g. where cluster nodes keep the weights. Weights are identified by hash, so resuming still works.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (e.g. auto or ray://head:10001); default: $RAY_ADDRESS, else a new local Ray.")] = None,
    num_actors: Annotated[Optional[int], typer.Option(help="Actors (model replicas). Default: GPUs / --gpus-per-actor, or 1 on CPU.")] = None,
    gpus_per_actor: Annotated[Optional[float], typer.Option(help="GPUs per actor (0 = CPU; 0.5 packs two actors per GPU). Default: 1 if the cluster has GPUs.")] = None,
    cpus_per_actor: Annotated[Optional[float], typer.Option(help="CPUs reserved per actor; fractions allowed. Default: CPUs / actors (<= 1 with GPUs).")] = None,
    in_process: Annotated[bool, typer.Option("--in-process", "--local", help="Run in this process without Ray (debugging).")] = False,
    max_attempts: Annotated[int, typer.Option(min=1, help="Tries per shard (actor crash or error) before it is reported failed.")] = 3,
    spare_actors: Annotated[int, typer.Option(min=0, help="Warm spare actors (each loads the model and reserves an actor's GPU/CPUs, idle) that take a crashed actor's place at once instead of its slot idling while a replacement loads.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Delete this dataset's files in --out and start over (also to change the manifest).")] = False,
    device: Annotated[Optional[str], typer.Option(help="torch device in the actors (default: cuda if available, else cpu).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32 | float16 | bfloat16 (default: float16 on GPU, float32 on CPU).")] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    reports: Annotated[bool, typer.Option(help="Write report.png and preview.jpg.")] = True,
) -> None:
    """Plan and generate a dataset: DIR/shards/*.tar + *.parquet, labels.parquet, summary.json, reports."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a clean stop (exit 130) from the first moment, as Ctrl-C
    try:
        from facegen.runner.balance import BalanceConfig, run_balance
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was written", err=True)
        raise SystemExit(130) from None

    if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
        raise FacegenError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16", where="--dtype")
    if in_process and spare_actors:
        raise FacegenError("spare actors need Ray; drop --in-process or --spare-actors", where="--spare-actors")
    cfg = BalanceConfig(
        manifest=manifest,
        out=out,
        model=model,
        distributor="in-process" if in_process else "ray",
        address=address,
        num_actors=num_actors,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        max_attempts=max_attempts,
        spare_actors=spare_actors,
        overwrite=overwrite,
        progress=progress,
        device=device,
        dtype=dtype,
        reports=reports,
        sigterm_as_interrupt=True,
    )
    try:
        result = run_balance(cfg)
    except KeyboardInterrupt:
        # Raised here, not left to typer: typer turns it into an exit code that main() does not return.
        typer.echo("interrupted: finished shards are kept, nothing half-written; re-run the same command to resume", err=True)
        raise SystemExit(130) from None
    s = result.summary
    rate = f", {s['images_per_second']:.2f} img/s" if s.get("images_per_second") else ""
    typer.echo(
        f"{result.samples}/{result.plan_rows} samples in {result.out} "
        f"({s['shards_done']} shards, {s['resumed_shards']} resumed, {len(result.failed_shards)} failed; "
        f"{result.sample_failures} sample failures; {s['wall_seconds']:.1f} s{rate})"
    )
    v = s.get("verification") or {}
    if v.get("mode", "off") != "off":
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(v.get("reject_reasons", {}).items()) if n)
        typer.echo(
            f"measured ({v['mode']}): {v.get('accepted', 0)} accepted, {v.get('rejected', 0)} rejected"
            + (f" ({reasons})" if reasons else "")
            + f" in {v.get('rounds_run', 1)} round(s); shortfall {v.get('shortfall', 0)}"
            + (" (see rejects.parquet and summary.json)" if v.get("shortfall") else "")
        )
    if not result.complete:
        typer.echo("incomplete: see summary.json and failures.parquet; re-run the same command to retry", err=True)
        raise SystemExit(RUN_INCOMPLETE)  # main() drops typer.Exit codes (standalone_mode=False)


def inspect(
    dataset: Annotated[str, typer.Argument(help="Dataset folder or fsspec URL written by `facegen balance`.")],
    hashes: Annotated[bool, typer.Option(help="Check each tar's sha256 against its stats file.")] = True,
) -> None:
    """Counts, per-bin table (planned vs written, planned labels, not measured) and an integrity check; exits 1 on any problem."""
    from facegen.data.inspect import format_report, inspect_dataset

    report = inspect_dataset(dataset, check_hashes=hashes)
    typer.echo(format_report(report))
    if not report.ok:
        raise SystemExit(RUN_INCOMPLETE)  # main() drops typer.Exit codes (standalone_mode=False)


export_app = typer.Typer(help="Export a dataset to other layouts.", no_args_is_help=True)


@export_app.command("imagefolder")
def export_imagefolder(
    dataset: Annotated[str, typer.Argument(help="Dataset folder or fsspec URL.")],
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/<identity>/<key>.jpg (ImageFolder / arcface_torch layout).")],
) -> None:
    """Write OUT/<identity>/<key>.jpg for every sample."""
    from facegen.data.export import export_imagefolder as run

    n = run(dataset, out)
    typer.echo(f"wrote {n} images to {out}")


def submit(
    ctx: typer.Context,
    address: Annotated[Optional[str], typer.Option(help="Ray dashboard address (default: $RAY_ADDRESS or http://127.0.0.1:8265).")] = None,
    pipeline: Annotated[Optional[Path], typer.Option(help="Job spec (pipelines/*.yaml) giving the command and runtime_env.")] = None,
    working_dir: Annotated[str, typer.Option(help="Folder uploaded as the job's working dir (this checkout).")] = ".",
    no_wait: Annotated[bool, typer.Option(help="Return after submitting instead of streaming the job's logs.")] = False,
    submission_id: Annotated[Optional[str], typer.Option(help="Job id (e.g. to find it again with `ray job logs`).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the `ray job submit` command instead of running it.")] = False,
) -> None:
    """Run a facegen command on a Ray cluster: `facegen submit -- balance -m M -o s3://bucket/ds`."""
    import os

    from facegen.runner.submit import build_job_command, load_pipeline

    spec = load_pipeline(pipeline) if pipeline else None
    job = build_job_command(
        list(ctx.args), address=address, working_dir=working_dir, spec=spec, no_wait=no_wait, submission_id=submission_id
    )
    if dry_run:
        typer.echo(job.shell())
        return
    try:
        code = subprocess.call(job.argv, env={**os.environ, **job.env})
    except FileNotFoundError:
        raise FacegenError("the `ray` command is not on PATH; install facegen (it brings ray[default]) in this environment", where="submit") from None
    if code:
        raise SystemExit(code)


def register(app: typer.Typer) -> None:
    """Add balance / inspect / export / submit to the app."""
    app.command()(balance)
    app.command()(inspect)
    app.add_typer(export_app, name="export")
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(submit)


__all__ = ["register"]
