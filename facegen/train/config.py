"""Typed configuration of the three FaceCrafter training stages (validated once, at the edge).

A stage config is a YAML file (``training/<stage>.yaml``) read with ``yaml.safe_load``; command-line
overrides are dotted keys (``{"steps": 10, "ray.num_workers": 2}``) applied before validation, so
every value goes through the same checks. Bad input raises one-line :class:`FacegenError`\\ s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facegen.errors import FacegenError

from facegen.train.pairs import PairingConfig  # the pairing rule's thresholds live with the rule
from facegen.train.stages import STAGES, stage_spec  # noqa: E402  (the stage table)

Stage = Literal["vae", "base", "pretrain-lmk", "pretrain-emo", "joint"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MixedConditioningConfig(_Strict):
    """Joint stage: each item is replicated ``replicas`` times with random (a_LMK, a_EMO) switches."""

    replicas: int | None = Field(None, ge=2, description="copies per item in a batch; default = batch_size (paper)")


class DecoderConfig(_Strict):
    """vae stage: the shape of a new decoder (or whole autoencoder): widths per level and depth."""

    block_out_channels: list[int] = Field(
        min_length=1, description="width per level, highest resolution first; as many levels as the encoder"
    )
    layers_per_block: int = Field(1, ge=1, le=4, description="ResNet blocks per level (+1, as in diffusers)")

    @field_validator("block_out_channels")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError("every width must be >= 1")
        return v


class RewardConfig(_Strict):
    """Consistency reward (`facegen.train.reward`): a frozen synthface estimator reads the decoded one-step
    clean prediction; its disagreement with the conditions is added to the loss."""

    estimator: str = Field(description="synthface estimator weights (.safetensors, a `train-estimator --out` folder's); "
                           "use one trained apart from the estimator that measures the model")
    emotion: float = Field(0.1, ge=0, description="weight of the emotion cross-entropy (rows with lmk or emo on)")
    pose: float = Field(0.1, ge=0, description="weight of the pose MSE in units of 30 degrees (rows with lmk on)")
    identity: float = Field(0.0, ge=0, description="weight of 1 - cos(measured identity embedding, ID condition)")
    identity_space: Literal["embedding", "observable"] = Field(
        "embedding",
        description="where the identity cosine is taken: `embedding` = the 512-d embeddings; `observable` = the "
        "identity features weighted by the estimator's per-feature reliability (what a 64-px image shows; "
        "the weighting `facegen verify` ranks identities with); needs weights that carry `identity_reliability`",
    )
    timestep_range: tuple[float, float] = Field(
        (0.0, 1.0), description="only rows whose timestep lies in this fraction of the schedule are rewarded"
    )

    @model_validator(mode="after")
    def _range(self) -> RewardConfig:
        lo, hi = self.timestep_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"reward.timestep_range must satisfy 0 <= low < high <= 1; got [{lo}, {hi}]")
        if not (self.emotion or self.pose or self.identity):
            raise ValueError("every reward weight is 0; set one of emotion / pose / identity or drop `reward`")
        return self


class RayConfig(_Strict):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)


class RunSettings(_Strict):
    name: str | None = Field(None, description="Ray Train run name; default = the stage name")
    storage_path: str | None = Field(None, description="local folder or s3://...; default <output>/ray")
    num_to_keep: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v.startswith(".")):
            raise ValueError("must be a plain folder name (no '/')")
        return v


class StageConfig(_Strict):
    """Everything one training stage needs; paths are resolved to absolute ones.

    Batch sizes: ``batch_size`` rows per worker per micro-step, so one optimiser step sees
    :attr:`effective_batch` = batch_size x ray.num_workers x grad_accum rows; in the mixed-conditioning
    stage every ``replicas`` rows are copies of one image (:attr:`effective_items` images per step; the
    paper's joint batch is one image x 16 replicas). ``lambda_ad`` is the paper's lambda_AD: the loss it
    multiplies follows eq. 2 as written (a sum over sample pairs, see `facegen.train.losses`).
    """

    stage: Stage
    data: str = Field(description="extracted training data folder (labels.parquet + shards/)")
    model: str = Field(description="input model folder (facegen.json + parts)")
    output: str = Field(description="where metrics and the exported model folder go")
    steps: int = Field(ge=1)
    batch_size: int = Field(
        ge=1, description="rows per worker per micro-step; effective batch = batch_size x ray.num_workers x grad_accum"
    )
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0, description="control modules and their K/V")
    encoder_lr: float = Field(
        1e-5, ge=0, description="base / joint stage: CLIP identity encoder; 0 freezes it (no gradient, kept as the "
        "input model's)",
    )
    weight_decay: float = Field(1e-2, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = Field(1.0, gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    checkpoint_every: int = Field(1000, ge=1)
    seed: int = 0
    lambda_ad: float = Field(
        5e-4, ge=0, description="lambda_AD of eq. 5 as in the paper (5e-4); L_AD sums eq. 2 over pairs (losses.py)"
    )
    uncond_prob: float = Field(0.1, ge=0, le=1, description="base: probability of training a sample unconditionally")
    kl_weight: float = Field(1e-4, ge=0, description="vae: weight of the KL term per latent element")
    train_encoder: bool = Field(
        True, description="vae: false = train only the decoder; the latent space, and so every UNet and "
        "control module trained on it, stays valid (how Stable Diffusion's ft-MSE VAE was made)",
    )
    reconstruction_loss: Literal["mse", "l1"] = Field("mse", description="vae: pixel loss of the reconstruction")
    decoder: DecoderConfig | None = Field(
        None, description="vae: replace the decoder with a new one of these widths (encoder weights kept)"
    )
    new_autoencoder: DecoderConfig | None = Field(
        None, description="vae: replace the whole autoencoder with a new one of these widths (same image and "
        "latent shapes; a new latent space, so the UNet must be retrained on it afterwards)",
    )
    snr_gamma: float | None = Field(
        None, gt=0, description="Min-SNR loss weighting min(SNR, gamma)/SNR per sample (e.g. 5); null = plain eq. 4"
    )
    x0_weighting: bool = Field(
        False,
        description="weight each sample's loss by 1/SNR_t (normalised to mean 1 in the batch): the error of the "
        "predicted clean latent, which is what decides pose and layout at high noise (exclusive with snr_gamma)",
    )
    x0_weight_cap: float | None = Field(
        None, gt=0, description="x0_weighting: clip 1/SNR_t at this value before normalising (e.g. 20), so "
        "the mid-noise steps keep some weight; null = no clipping",
    )
    background_weight: float = Field(
        1.0, ge=0, le=1, description="loss weight of latent cells (vae stage: pixels) outside the face mask "
        "relative to inside (1 = eq. 4 as is); below 1 the loss concentrates on the face, where expressions are",
    )
    timestep_range: tuple[float, float] = Field(
        (0.0, 1.0), description="train on timesteps drawn uniformly from this fraction of the schedule, e.g. [0.6, 1.0]"
    )
    resolution: int | None = Field(
        None, ge=8,
        description="training image size; null = the model's, which must equal the data's crop size (else an "
        "error); a number resizes the crops to it (bicubic) explicitly",
    )
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="keep an exponential moving average of the trained weights with this decay "
        "(e.g. 0.999) and export it instead of the last step's weights; null = export the raw weights",
    )
    ema_start: int = Field(
        0, ge=0, description="ema_decay: the average starts from the weights after this step (0 = from the start)"
    )
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="after warm-up: constant, or cosine decay to min_lr_ratio x lr at the last step"
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine schedule: final lr as a fraction of lr")
    init_landmark: str | None = Field(None, description="model folder whose landmark/ replaces the input's (joint)")
    init_emotion: str | None = Field(None, description="model folder whose emotion/ replaces the input's (joint)")
    overfit_batches: int = Field(0, ge=0, description="debug: cycle the first N batches with fixed noise (0 = off)")
    reward: RewardConfig | None = Field(
        None, description="diffusion stages: add a consistency reward measured by a frozen estimator (null = eq. 4/5 only)"
    )
    pairing: PairingConfig = PairingConfig()
    mixed: MixedConditioningConfig = MixedConditioningConfig()
    ray: RayConfig = RayConfig()
    run: RunSettings = RunSettings()

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `no` as False.
        return "no" if v is False else v

    @model_validator(mode="after")
    def _replicas_fit(self) -> StageConfig:
        r, mixed = self.mixed.replicas, stage_spec(self.stage).mixed
        if mixed and r is not None and self.batch_size % r:
            raise ValueError(f"mixed.replicas ({r}) must divide batch_size ({self.batch_size})")
        if mixed and r is None and self.batch_size < 2:
            raise ValueError(f"{self.stage} stage needs batch_size >= 2 (items are replicated across the batch)")
        return self

    @model_validator(mode="after")
    def _loss_options(self) -> StageConfig:
        lo, hi = self.timestep_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"timestep_range must satisfy 0 <= low < high <= 1; got [{lo}, {hi}]")
        if self.ema_start and self.ema_decay is None:
            raise ValueError("ema_start applies to ema_decay; set ema_decay (e.g. 0.999) or drop ema_start")
        if self.x0_weight_cap is not None and not self.x0_weighting:
            raise ValueError("x0_weight_cap applies to x0_weighting; set x0_weighting: true or drop the cap")
        if self.x0_weighting and self.snr_gamma is not None:
            raise ValueError("x0_weighting and snr_gamma are two loss weightings; set one of them")
        if self.reward is not None and stage_spec(self.stage).objective != "diffusion":
            raise ValueError(f"reward applies to the diffusion stages; drop it from the {self.stage} config")
        if stage_spec(self.stage).objective != "autoencoder":
            for name, default in (("train_encoder", True), ("reconstruction_loss", "mse"), ("decoder", None),
                                  ("new_autoencoder", None)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name} applies to the autoencoder (vae) stage only; drop it from the {self.stage} config")
        if self.new_autoencoder is not None and (self.decoder is not None or not self.train_encoder):
            raise ValueError("new_autoencoder trains a whole new autoencoder; drop decoder / train_encoder: false")
        return self

    @property
    def replicas(self) -> int:
        """Copies per item in a joint batch (1 in the pre-training stages)."""
        if not stage_spec(self.stage).mixed:
            return 1
        return self.mixed.replicas or self.batch_size

    @property
    def items_per_batch(self) -> int:
        return self.batch_size // self.replicas

    @property
    def effective_batch(self) -> int:
        """Rows per optimiser step: batch_size (per worker) x ray.num_workers x grad_accum."""
        return self.batch_size * self.ray.num_workers * self.grad_accum

    @property
    def effective_items(self) -> int:
        """Distinct target images per optimiser step (effective_batch / replicas)."""
        return self.effective_batch // self.replicas

    @property
    def run_name(self) -> str:
        return self.run.name or self.stage

    @property
    def storage_path(self) -> str:
        return self.run.storage_path or str(Path(self.output) / "ray")


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise FacegenError(f"cannot override {key!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def _absolute(path: str, base: Path) -> str:
    if "://" in path:
        return path
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (base / p).resolve())


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: field {loc!r}: {msg}; fix it in the config or the command-line override{more}"


def stage_config_from_dict(
    raw: dict[str, Any], stage: str, *, source: str = "config", overrides: dict[str, Any] | None = None,
    base_dir: Path | None = None,
) -> StageConfig:
    """Validate a raw mapping (+ dotted overrides) into a :class:`StageConfig` for `stage`."""
    if stage not in STAGES:
        raise FacegenError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if not isinstance(raw, dict):
        raise FacegenError(f"{source}: expected a mapping of settings at the top level")
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    declared = raw.get("stage", stage)
    if declared != stage:
        raise FacegenError(f"{source}: field 'stage' is {declared!r} but the command is {stage!r}; use the matching config")
    raw["stage"] = stage
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)
    try:
        cfg = StageConfig.model_validate(raw)
    except ValidationError as exc:
        raise FacegenError(_format_error(exc, source)) from None
    base = base_dir or Path.cwd()
    updates: dict[str, Any] = {
        "data": _absolute(cfg.data, base),
        "model": _absolute(cfg.model, base),
        "output": _absolute(cfg.output, base),
    }
    for key in ("init_landmark", "init_emotion"):
        if getattr(cfg, key) is not None:
            updates[key] = _absolute(getattr(cfg, key), base)
    if cfg.reward is not None:
        updates["reward"] = cfg.reward.model_copy(update={"estimator": _absolute(cfg.reward.estimator, base)})
    if cfg.run.storage_path is not None:
        updates["run"] = cfg.run.model_copy(update={"storage_path": _absolute(cfg.run.storage_path, base)})
    return cfg.model_copy(update=updates)


def load_stage_config(path: str | Path, stage: str, overrides: dict[str, Any] | None = None) -> StageConfig:
    """Read ``training/<stage>.yaml`` (safe_load) and validate it; relative paths are relative to the CWD."""
    path = Path(path)
    if not path.is_file():
        raise FacegenError(f"config file {str(path)!r} not found; pass --config training/<stage>.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise FacegenError(f"{path}: not valid YAML{where}; fix the syntax") from None
    return stage_config_from_dict(raw or {}, stage, source=str(path), overrides=overrides)


def check_inputs(cfg: StageConfig) -> None:
    """Fail early (one line) when the data or model folder is missing."""
    for key in ("data", "model", "output"):
        if "://" in getattr(cfg, key):
            raise FacegenError(
                f"{key}: {getattr(cfg, key)!r} must be a folder every worker can read (local or shared file system); "
                "only run.storage_path may be s3://"
            )
    if cfg.reward is not None:
        if not Path(cfg.reward.estimator).is_file():
            raise FacegenError(f"reward.estimator: {cfg.reward.estimator!r} not found; train one with "
                               "`facegen synthface train-estimator` or fix the path")
        from facegen.synthface.estimator import load_estimator

        runner = load_estimator(cfg.reward.estimator)  # not an estimator: fails here, in one line, before Ray starts
        if cfg.reward.identity_space == "observable" and runner.reliability is None:
            raise FacegenError(f"reward.identity_space: 'observable' needs estimator weights with identity_reliability; "
                               f"{cfg.reward.estimator!r} has none (retrain it with `facegen synthface train-estimator`)")
    data = Path(cfg.data)
    if not (data / "labels.parquet").is_file():
        raise FacegenError(f"data folder {cfg.data!r} has no labels.parquet; run `facegen extract` first or fix 'data'")
    from facegen.train.data import check_labels_usable

    check_labels_usable(data, cfg.stage)
    for key in ("model", "init_landmark", "init_emotion"):
        value = getattr(cfg, key)
        if value is not None and "://" not in value and not (Path(value) / "facegen.json").is_file():
            raise FacegenError(f"{key}: {value!r} is not a model folder (no facegen.json); fix {key!r}")
    check_resolution(cfg)
    check_autoencoder_widths(cfg)


def check_autoencoder_widths(cfg: StageConfig) -> None:
    """Fail early (one line, before Ray starts) when `decoder` / `new_autoencoder` cannot fit the input
    model's autoencoder."""
    import json

    from facegen.model.vae import check_widths

    from facegen.train.stages import stage_spec

    wants_kl = [name for name in ("decoder", "new_autoencoder") if getattr(cfg, name) is not None]
    trains_autoencoder = stage_spec(cfg.stage).objective == "autoencoder"
    if not wants_kl and not trains_autoencoder:
        return
    config_file = Path(cfg.model) / "vae" / "config.json"
    try:
        vae_config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise FacegenError(f"cannot read the model's autoencoder config ({exc}); fix 'model'", where=str(config_file)) from None
    if vae_config.get("_class_name") == "ResampleAutoencoder":
        if wants_kl:
            raise FacegenError("the model's autoencoder is a fixed ResampleAutoencoder (pixel latents): it has no KL "
                               "decoder to replace; drop it", where=wants_kl[0])
        if trains_autoencoder and not int(vae_config.get("refiner_channels", 0)):
            raise FacegenError("the model's ResampleAutoencoder has no refiner (refiner_channels: 0): nothing to train; "
                               "use a model made with a refiner (synthface init-model --autoencoder resample2)",
                               where=str(config_file))
        return
    for name in wants_kl:
        check_widths(vae_config, getattr(cfg, name).block_out_channels, f"{name}.block_out_channels")


def check_resolution(cfg: StageConfig) -> None:
    """Fail early (one line) when the data's crop size is not the training resolution and `resolution` is unset."""
    from facegen.model.folder import read_model_info
    from facegen.train.data import data_crop_size, training_resolution

    training_resolution(cfg.resolution, read_model_info(cfg.model).resolution, data_crop_size(cfg.data))
