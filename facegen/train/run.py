"""Driver side of a training stage: start (or resume) the Ray Train run, then export the model folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegen.errors import FacegenError
from facegen.train.config import StageConfig, check_inputs


@dataclass(frozen=True)
class TrainResult:
    """What a finished stage produced."""

    model_dir: Path  # exported model folder (output/model)
    metrics_path: Path  # output/metrics.jsonl
    checkpoint_path: str  # final Ray Train checkpoint (local path or URI)
    final_metrics: dict[str, Any]


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` / $RAY_ADDRESS if given, else start a private local Ray (never joins a stray one)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": True, "include_dashboard": False}
    if address == "local" and num_cpus:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


def trainer_class(has_dashboard: bool) -> type:
    """`TorchTrainer`, or for a Ray without a dashboard (facegen's private local instances) a subclass
    without Ray Train's placement-group cleaner. That cleaner polls the state API, which the dashboard
    serves, once a second; without one of its own it finds none (a warning per poll, thousands per run)
    or, worse, the newest Ray instance on the machine: once another instance with a dashboard starts, it
    does not find its controller there, takes it for dead and removes the run's placement group, killing
    a healthy run. A private instance ends with its driver anyway."""
    from ray.train.torch import TorchTrainer

    if has_dashboard:
        return TorchTrainer
    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:  # another Ray layout: keep its defaults
        return TorchTrainer

    class PrivateRayTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):  # type: ignore[no-untyped-def]
            callbacks = super()._create_default_callbacks()
            return [cb for cb in callbacks if not isinstance(cb, PlacementGroupCleanerCallback)]

    return PrivateRayTorchTrainer


def build_trainer(cfg: StageConfig, *, has_dashboard: bool | None = None):
    """The `TorchTrainer` for a stage (same run name + storage path = resume); `has_dashboard` (default:
    whether the connected Ray has one, `ray_has_dashboard`) picks `trainer_class`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from facegen.ray_session import ray_has_dashboard

    from facegen.train.loop import train_loop

    resources = {"CPU": cfg.ray.cpus_per_worker}
    if cfg.ray.use_gpu:
        resources["GPU"] = 1
    trainer = trainer_class(ray_has_dashboard() if has_dashboard is None else has_dashboard)
    return trainer(
        train_loop,
        train_loop_config={"config": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(
            num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=cfg.run_name,
            storage_path=cfg.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.num_to_keep),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
        ),
    )


def run_stage(cfg: StageConfig, *, address: str | None = None, export: bool = True) -> TrainResult:
    """Train one stage on Ray (resuming the run if it has a checkpoint) and export `output/model`."""
    from ray.train import TrainingFailedError

    from facegen.train.weights import export_model

    check_inputs(cfg)
    if "://" not in cfg.storage_path:
        Path(cfg.storage_path).mkdir(parents=True, exist_ok=True)
    ensure_ray(address)
    try:
        result = build_trainer(cfg).fit()
    except TrainingFailedError as exc:
        root = exc.__cause__ or exc
        first = str(root).strip().splitlines()[-1] if str(root).strip() else type(root).__name__
        raise FacegenError(f"training run {cfg.run_name!r} failed: {first}") from exc
    if result.checkpoint is None:
        raise FacegenError(f"training run {cfg.run_name!r} finished without a checkpoint; check the worker logs")
    out = Path(cfg.output) / "model"
    if export:
        with result.checkpoint.as_directory() as ckpt_dir:
            export_model(cfg, ckpt_dir, out)
    return TrainResult(
        model_dir=out,
        metrics_path=Path(cfg.output) / "metrics.jsonl",
        checkpoint_path=result.checkpoint.path,
        final_metrics=dict(result.metrics or {}),
    )
