"""`facegen plan` (dry run: manifest -> plan) and `facegen manifest validate`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `plan` and the `manifest` group to the app."""
    app.command("plan")(plan)
    manifest_app = typer.Typer(help="Check manifests before running them.", no_args_is_help=True)
    manifest_app.command("validate")(validate)
    app.add_typer(manifest_app, name="manifest")


def plan(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest YAML (see manifests/demo.yaml)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for plan.parquet, identities.npy, plan_summary.json and plan.png."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Save plan.png with target vs planned distributions."),
) -> None:
    """Dry run: turn a manifest into its per-image plan and show target vs planned counts per bin."""
    from facegen.manifest import load_manifest, write_plan
    from facegen.manifest.plan_report import save_plan_plot, summary_table

    info = write_plan(load_manifest(manifest), out)
    typer.echo(summary_table(info.summary))
    typer.echo("")
    typer.echo(f"wrote {info.plan_path} ({info.num_rows:,} rows, {info.num_shards:,} shards)")
    typer.echo(f"wrote {info.identities_path} ({info.num_identities:,} identities)")
    if plot:
        typer.echo(f"wrote {save_plan_plot(info.summary, out)}")


def validate(manifest: Path = typer.Argument(..., help="Manifest YAML to check.")) -> None:
    """Validate a manifest (schema, files, labels) without planning; prints `ok` or one error line."""
    from facegen.manifest import load_manifest

    m = load_manifest(manifest)
    typer.echo(f"ok: {manifest} (version {m.version}, seed {m.seed}, model {m.model})")
