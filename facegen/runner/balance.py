"""`facegen balance` as a library call: plan -> generate shards on Ray -> finalize.

    result = run_balance(BalanceConfig(manifest="manifests/demo.yaml", out="out/demo"))
"""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from facegen.errors import FacegenError
from facegen.io.fs import Location
from facegen.io.lock import LOCK_NAME, Lock, read_lock, write_lock
from facegen.io.shards import SHARDS_DIR, completed_shards, read_shard_stats
from facegen.runner.distributors import Distributor, InProcessDistributor, RayDistributor, connect_ray
from facegen.runner.finalize import (
    FAILURES_NAME,
    LABELS_NAME,
    SUMMARY_NAME,
    distribution_summary,
    write_failures,
    write_labels,
    write_summary,
)
from facegen.labels import GENERATED_SCHEMA
from facegen.runner.generation import GenerationWorker
from facegen.runner.run import RunSummary, run_shards
from facegen.runner.task import ShardTask
from facegen.runner.units import units_from_parquet

log = logging.getLogger(__name__)

PLAN_NAME = "plan.parquet"
# plan.parquet last: its presence means the plan is whole.
PLAN_FILES = ("identities.npy", "plan_summary.json", PLAN_NAME)
REPORT_NAME = "report.png"
PREVIEW_NAME = "preview.jpg"
#: Everything `--overwrite` may delete (never anything else in DIR).
OWNED = (SHARDS_DIR, *PLAN_FILES, LABELS_NAME, FAILURES_NAME, SUMMARY_NAME, REPORT_NAME, PREVIEW_NAME, LOCK_NAME)


@dataclass
class BalanceConfig:
    """Options of `facegen balance` (validated by the CLI; defaults suit a laptop)."""

    manifest: str | Path
    out: str
    model: str | None = None  # overrides the manifest's `model:` (e.g. where cluster nodes keep the weights)
    distributor: Literal["ray", "in-process"] = "ray"
    address: str | None = None
    num_actors: int | None = None  # None: GPUs / gpus_per_actor on GPU clusters, 1 on CPU
    gpus_per_actor: float | None = None  # None: 1 if the cluster has GPUs, else 0
    cpus_per_actor: float | None = None  # None: CPUs / actors (<= 1 per GPU actor)
    max_attempts: int = 3
    overwrite: bool = False
    progress: bool = True
    device: str | None = None
    dtype: str | None = None
    reports: bool = True
    #: Turn SIGTERM (``ray job stop``, schedulers) into KeyboardInterrupt: the same clean stop as Ctrl-C.
    #: Installed after Ray starts, because ``ray.init`` installs its own SIGTERM handler (abort).
    sigterm_as_interrupt: bool = False


@dataclass
class BalanceResult:
    out: str
    plan_rows: int
    samples: int
    sample_failures: int
    failed_shards: dict[int, str]
    run: RunSummary
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed_shards and self.sample_failures == 0 and self.samples == self.plan_rows


def _load(manifest_path: str | Path, model_override: str | None = None) -> tuple[Any, Path, str, Lock]:
    from facegen.manifest import load_manifest, resolve_model_dir
    from facegen.model.loading import model_hash

    manifest = load_manifest(manifest_path)
    if model_override:
        model = model_override if model_override == "tiny" else str(Path(model_override).expanduser().resolve())
        manifest = manifest.model_copy(update={"model": model})
    model_dir = Path(resolve_model_dir(manifest))
    mhash = model_hash(model_dir)
    resolved = manifest.model_dump(mode="json")
    if manifest.model != "tiny":
        resolved["model"] = {"hash": mhash}  # where the weights live does not change the samples
    lock = Lock.create(
        resolved,
        source=str(manifest_path),
        source_bytes=Path(manifest_path).read_bytes(),
        model={"dir": str(model_dir), "name": manifest.model, "hash": mhash},
    )
    return manifest, model_dir, mhash, lock


def prepare_output(root: Location, lock: Lock, overwrite: bool) -> bool:
    """Check DIR against `lock`; returns True when resuming an earlier run of the same manifest."""
    existing = read_lock(root)
    if overwrite:
        for rel in OWNED:
            if rel == SHARDS_DIR:
                root.remove_tree(rel)
            else:
                root.remove(rel)
        existing = None
    elif existing is not None and existing.get("fingerprint") != lock.fingerprint:
        raise FacegenError(
            f"holds a dataset of a different manifest or model ({existing.get('manifest_source', '?')}); "
            "pass --overwrite to start over or choose another --out",
            where=root.url,
        )
    elif existing is None and any(name in OWNED for name in root.list()):
        raise FacegenError(
            "has dataset files but no manifest.lock.yaml; pass --overwrite to start over or choose another --out",
            where=root.url,
        )
    write_lock(root, lock)
    return existing is not None


def ensure_plan(root: Location, manifest: Any) -> int:
    """Write DIR/plan.parquet (+ identities.npy) unless a whole plan is already there; returns its rows."""
    if not root.exists(PLAN_NAME):
        from facegen.manifest import write_plan

        staging = Path(tempfile.mkdtemp(prefix="facegen-plan-"))
        try:
            write_plan(manifest, staging)
            for name in PLAN_FILES:
                root.write_bytes_atomic(name, (staging / name).read_bytes())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    with root.open(PLAN_NAME, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def make_distributor(cfg: BalanceConfig) -> tuple[Distributor, int | None, bool]:
    """The distributor, the torch thread count per worker, and whether Ray was started here."""
    if cfg.distributor == "in-process":
        return InProcessDistributor(max_attempts=cfg.max_attempts), None, False
    if cfg.gpus_per_actor is not None and cfg.gpus_per_actor < 0:
        raise FacegenError("must be >= 0", where="--gpus-per-actor")
    if cfg.cpus_per_actor is not None and cfg.cpus_per_actor <= 0:
        raise FacegenError("must be > 0 (fractions such as 0.5 are fine)", where="--cpus-per-actor")
    if cfg.num_actors is not None and cfg.num_actors < 1:
        raise FacegenError("must be >= 1", where="--num-actors")
    import ray

    started = connect_ray(cfg.address)
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    gpus_per_actor = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if started and not cfg.address and gpus_per_actor > gpus:
        ray.shutdown()
        raise FacegenError(
            f"asks for {gpus_per_actor:g} GPU(s) per actor but this machine has {gpus:g}; use --gpus-per-actor 0",
            where="--gpus-per-actor",
        )
    num_actors = cfg.num_actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor > 0 else 1)
    cpus_per_actor = cfg.cpus_per_actor
    if cpus_per_actor is None:
        cpus_per_actor = cpus / num_actors if gpus_per_actor == 0 else min(1.0, cpus / num_actors)
    threads = max(1, int(cpus_per_actor)) if gpus_per_actor == 0 else None
    dist = RayDistributor(
        num_actors,
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        max_attempts=cfg.max_attempts,
        address=cfg.address,
    )
    return dist, threads, started


def run_balance(cfg: BalanceConfig) -> BalanceResult:
    """Plan, generate (resuming finished shards) and finalize a dataset under ``cfg.out``."""
    manifest, model_dir, mhash, lock = _load(cfg.manifest, cfg.model)
    root = Location(cfg.out)
    root.makedirs()
    resumed = prepare_output(root, lock, cfg.overwrite)
    plan_rows = ensure_plan(root, manifest)
    log.info("%s %s: %d planned samples", "resuming" if resumed else "starting", root.url, plan_rows)

    distributor, threads, started_ray = make_distributor(cfg)
    if cfg.sigterm_as_interrupt and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _generate(cfg, root, manifest, model_dir, mhash, lock, plan_rows, distributor, threads)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _generate(
    cfg: BalanceConfig,
    root: Location,
    manifest: Any,
    model_dir: Path,
    mhash: str,
    lock: Lock,
    plan_rows: int,
    distributor: Distributor,
    threads: int | None,
) -> BalanceResult:
    worker_factory = functools.partial(
        GenerationWorker,
        str(model_dir),
        root.url,
        manifest,
        device=cfg.device,
        dtype=cfg.dtype,
        threads=threads,
        expected_model_hash=mhash,
    )
    task = ShardTask(
        worker_factory,
        root.url,
        lock.fingerprint,
        label_schema=GENERATED_SCHEMA,
        extra_stats={"model_hash": mhash, "manifest_sha256": lock.manifest_sha256},
    )
    skip = set(completed_shards(root, lock.fingerprint))
    units = units_from_parquet(root.url_of(PLAN_NAME), skip=skip)
    run = run_shards(units, task, distributor, total_rows=plan_rows, progress=cfg.progress, description="balance")
    # Units of skipped shards never reach run_shards: count them as resumed here.
    for shard in skip:
        if shard not in run.done:
            stats = read_shard_stats(root, shard)
            if stats is not None:
                run.done[shard] = stats
                run.resumed.append(shard)
    return finalize(root, manifest, lock, plan_rows, run, reports=cfg.reports)


def finalize(root: Location, manifest: Any, lock: Lock, plan_rows: int, run: RunSummary, reports: bool = True) -> BalanceResult:
    labels = write_labels(root, run.done, GENERATED_SCHEMA)
    write_failures(root, run.done, run.failed)
    with root.open(PLAN_NAME, "rb") as f:
        plan = pq.read_table(f, columns=["emotion", "controls", "yaw", "pitch", "roll", "valence", "arousal"])
    new_seconds = sum(run.done[s].seconds for s in run.done if s not in run.resumed)
    summary: dict[str, Any] = {
        "dataset": root.url,
        "complete": False,
        "plan_rows": plan_rows,
        "samples": labels.num_rows,
        "sample_failures": run.sample_failures,
        "shards_total": len(run.done) + len(run.failed),
        "shards_done": len(run.done),
        "failed_shards": {str(k): v for k, v in sorted(run.failed.items())},
        "resumed_shards": len(run.resumed),
        "retried_shards": {str(k): v for k, v in sorted(run.retried.items())},
        "new_samples": run.new_samples,
        "wall_seconds": round(run.seconds, 3),
        "images_per_second": round(run.new_samples / run.seconds, 3) if run.seconds > 0 and run.new_samples else None,
        "actor_seconds": round(new_seconds, 3),
        "fingerprint": lock.fingerprint,
        "model": lock.model,
        "distributions": distribution_summary(labels, plan),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    summary["complete"] = not run.failed and run.sample_failures == 0 and labels.num_rows == plan_rows
    write_summary(root, summary)
    if reports:
        from facegen.report import write_preview, write_report

        write_report(root, labels, plan, manifest)
        write_preview(root, labels)
    return BalanceResult(root.url, plan_rows, labels.num_rows, run.sample_failures, dict(run.failed), run, summary)


__all__ = ["BalanceConfig", "BalanceResult", "ensure_plan", "finalize", "prepare_output", "run_balance"]
