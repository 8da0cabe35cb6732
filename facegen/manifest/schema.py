"""The manifest schema (version 1): what to generate, validated once at the edge.

Paths in a manifest are relative to the manifest's folder; the loader passes that folder as the
validation context (`{"base_dir": Path}`) and every path field is stored resolved and checked.
Validator messages read "<problem>; <what to do>" because the loader prints them verbatim.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from facegen.errors import FacegenError

from facegen.labels import CONTROL_SETS, EMOTION_NAMES, IMAGE_SUFFIXES  # noqa: F401  (IMAGE_SUFFIXES re-exported)

MANIFEST_VERSION = 1
PROB_TOLERANCE = 1e-6
MAX_ABS_ANGLE = 90.0


class StrictModel(BaseModel):
    # strict: YAML already gives native types, so "5" for an int is a mistake worth reporting.
    # allow_inf_nan=False: YAML's .nan / .inf pass every range check (comparisons with NaN are
    # False), so every float field and list/dict item must be finite.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _resolve_path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value.strip():
        path = Path(value).expanduser()
    else:
        raise ValueError(f"expected a file or folder path (a string), got {value!r}; write a path")
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path.resolve()


def identity_images(folder: Path) -> list[Path]:
    """The image files of an identity folder, sorted (files with other extensions are ignored)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def identity_groups(folder: Path) -> dict[str, list[Path]]:
    """Identity name -> its photos: one identity per subfolder, or per photo directly in `folder`."""
    groups: dict[str, list[Path]] = {}
    for path in identity_images(folder):
        rel = path.relative_to(folder)
        groups.setdefault(rel.parts[0] if len(rel.parts) > 1 else rel.stem, []).append(path)
    return groups


def _check_image_file(path: Path) -> None:
    """Header check of one identity photo (cheap: PIL reads only the first bytes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.size  # noqa: B018  (identified: the format's header parsed)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read despite its {path.suffix} name; remove it or replace it with a photo") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read as an image ({exc}); remove it or replace it with a photo") from None


def _check_sums_to_one(probs: dict[str, float], what: str) -> None:
    total = math.fsum(probs.values())
    if abs(total - 1.0) > PROB_TOLERANCE:
        raise ValueError(
            f"{what} probabilities sum to {total:.9g}, not 1 (tolerance {PROB_TOLERANCE:g}); "
            "rescale them so they add up to exactly 1"
        )


# --------------------------------------------------------------------------------------- sampler
class Guidance(StrictModel):
    """Classifier-free guidance weights wID / wLMK / wEMO (FaceCrafter eq. 6)."""

    id: float = Field(2.5, ge=0.0, le=50.0)
    lmk: float = Field(2.0, ge=0.0, le=50.0)
    emo: float = Field(2.0, ge=0.0, le=50.0)


class GuidanceIntervals(StrictModel):
    """Per branch, the [lo, hi] interval of the run in which its eq.-6 delta is computed; outside it the
    branch's UNet rows are skipped (a control whose delta is off stays in the conditioning, unguided;
    see facegen/model/guidance.py). A branch left out (or null) is guided at every step.

    `unit: fraction` (default): 0 = the first (noisiest) step, 1 = the last. `unit: sigma`: the noise
    level sqrt((1 - alpha_bar) / alpha_bar) of the step's timestep (SD1.5: ~14.6 down to ~0.03).
    """

    unit: Literal["fraction", "sigma"] = "fraction"
    id: list[float] | None = Field(None, min_length=2, max_length=2)
    lmk: list[float] | None = Field(None, min_length=2, max_length=2)
    emo: list[float] | None = Field(None, min_length=2, max_length=2)

    @field_validator("id", "lmk", "emo")
    @classmethod
    def _ordered(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            lo, hi = value
            if lo > hi:
                raise ValueError(f"interval [{lo:g}, {hi:g}] has lo > hi; swap them")
            if lo < 0:
                raise ValueError(f"interval [{lo:g}, {hi:g}] starts below 0; fractions and sigmas are >= 0")
        return value

    @model_validator(mode="after")
    def _fractions(self) -> GuidanceIntervals:
        if self.unit == "fraction":
            for name in ("id", "lmk", "emo"):
                value = getattr(self, name)
                if value is not None and value[1] > 1:
                    raise ValueError(
                        f"{name} interval [{value[0]:g}, {value[1]:g}] ends beyond 1 with unit fraction; "
                        "use fractions of the run in [0, 1] or set unit: sigma"
                    )
        return self


class Sampler(StrictModel):
    scheduler: Literal["dpmpp", "ddim", "ddpm", "dpmpp-sde"] = "dpmpp"
    steps: int = Field(25, ge=1, le=1000)
    guidance: Guidance = Field(default_factory=Guidance)
    #: null = every eq.-6 delta at every step. Left out of model_dump while null, so manifests without
    #: it keep the run fingerprint they had before the field existed (resume stays valid).
    guidance_intervals: GuidanceIntervals | None = Field(None, exclude_if=lambda v: v is None)
    #: Output image side in pixels; null = the model's default resolution.
    image_size: int | None = Field(None, ge=8, le=4096)
    batch_size: int = Field(8, ge=1, le=4096)

    @field_validator("image_size")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError(f"image_size {value} is not a multiple of 8 (the VAE downsamples by 8); use e.g. {value // 8 * 8 or 8}")
        return value


class Output(StrictModel):
    samples_per_shard: int = Field(1000, ge=1)
    image_format: Literal["jpg", "png", "webp"] = "jpg"
    #: JPEG/WebP quality 1..100 (ignored for png).
    quality: int = Field(95, ge=1, le=100)
    #: Also store the rendered landmark control image next to each sample.
    store_landmark_image: bool = False


# ------------------------------------------------------------------------------------ identities
class RandomIdentities(StrictModel):
    # Separation is checked against every kept identity: O(count^2 x 512) work, ~1 min at 100k.
    count: int = Field(ge=1, le=100_000)
    #: Every pair of identity vectors has cosine similarity strictly below this.
    max_similarity: float = Field(0.3, gt=0.0, le=1.0)


class Identities(StrictModel):
    """Exactly one of `folder`, `embeddings`, `random`."""

    folder: Path | None = None
    embeddings: Path | None = None
    #: Parquet embeddings only: the list<float> column with the 512-d vectors.
    embedding_column: str = "embedding"
    random: RandomIdentities | None = None

    @field_validator("folder", mode="before")
    @classmethod
    def _folder(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if not path.is_dir():
            raise ValueError(f"folder {path} does not exist; point it at a folder of identity images")
        images = identity_images(path)
        if not images:
            raise ValueError(
                f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add one image per identity (or one subfolder per identity)"
            )
        for image in images:
            _check_image_file(image)
        return path

    @field_validator("embeddings", mode="before")
    @classmethod
    def _embeddings(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if path.suffix.lower() not in (".npy", ".parquet"):
            raise ValueError(f"{path.name} is neither .npy nor .parquet; give a (N,512) .npy or a Parquet with an `identity` column")
        if not path.is_file():
            raise ValueError(f"file {path} does not exist; fix the path (relative paths start at the manifest's folder)")
        return path

    @model_validator(mode="after")
    def _exactly_one(self) -> Identities:
        given = [name for name in ("folder", "embeddings", "random") if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of folder / embeddings / random (got {got}); keep one source")
        return self


# --------------------------------------------------------------------------------------- targets
class EmotionProbs(StrictModel):
    """Target share of each EmoNet class; missing classes are 0. `uniform` = 1/8 each."""

    neutral: float = Field(0.0, ge=0.0, le=1.0)
    happy: float = Field(0.0, ge=0.0, le=1.0)
    sad: float = Field(0.0, ge=0.0, le=1.0)
    surprise: float = Field(0.0, ge=0.0, le=1.0)
    fear: float = Field(0.0, ge=0.0, le=1.0)
    disgust: float = Field(0.0, ge=0.0, le=1.0)
    anger: float = Field(0.0, ge=0.0, le=1.0)
    contempt: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        if value == "uniform":
            return {name: 1.0 / len(EMOTION_NAMES) for name in EMOTION_NAMES}
        if isinstance(value, str) and value in EMOTION_NAMES:
            return {value: 1.0}
        if isinstance(value, str):
            raise ValueError(
                f"unknown emotion target {value!r}; use `uniform`, one class name, or a mapping "
                f"class -> probability over {', '.join(EMOTION_NAMES)}"
            )
        return value

    @model_validator(mode="after")
    def _sum(self) -> EmotionProbs:
        _check_sums_to_one(self.as_dict(), "emotion")
        return self

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in EMOTION_NAMES}

    def as_list(self) -> list[float]:
        return [float(getattr(self, name)) for name in EMOTION_NAMES]


class ValenceArousalOverride(StrictModel):
    """Overrides one class's row of the prior table (`facegen.conditions.emotions.VA_PRIOR`)."""

    valence: float | None = Field(None, ge=-1.0, le=1.0)
    arousal: float | None = Field(None, ge=-1.0, le=1.0)
    valence_std: float | None = Field(None, ge=0.0, le=1.0)
    arousal_std: float | None = Field(None, ge=0.0, le=1.0)


class ValenceArousalOverrides(StrictModel):
    neutral: ValenceArousalOverride | None = None
    happy: ValenceArousalOverride | None = None
    sad: ValenceArousalOverride | None = None
    surprise: ValenceArousalOverride | None = None
    fear: ValenceArousalOverride | None = None
    disgust: ValenceArousalOverride | None = None
    anger: ValenceArousalOverride | None = None
    contempt: ValenceArousalOverride | None = None


class NormalSpec(StrictModel):
    mean: float = Field(ge=-MAX_ABS_ANGLE, le=MAX_ABS_ANGLE)
    std: float = Field(gt=0.0, le=180.0)
    #: [lo, hi] truncation; default mean +- 3 std (clamped to +-90).
    clip: list[float] | None = Field(None, min_length=2, max_length=2)

    @field_validator("clip")
    @classmethod
    def _clip(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            _check_range(value, "clip")
        return value


class HistogramSpec(StrictModel):
    edges: list[float] = Field(min_length=2, max_length=10_001)
    weights: list[float] = Field(min_length=1, max_length=10_000)

    @field_validator("edges")
    @classmethod
    def _edges(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"edges {value} are not strictly increasing; sort them and drop duplicates")
        if min(value) < -MAX_ABS_ANGLE or max(value) > MAX_ABS_ANGLE:
            raise ValueError(f"edges must lie within [-{MAX_ABS_ANGLE:g}, {MAX_ABS_ANGLE:g}] degrees; narrow them")
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: list[float]) -> list[float]:
        if any(w < 0 or not math.isfinite(w) for w in value):
            raise ValueError("weights must be finite and >= 0; fix the negative entries")
        if math.fsum(value) <= 0:
            raise ValueError("weights are all zero; give at least one bin a positive weight")
        return value

    @model_validator(mode="after")
    def _lengths(self) -> HistogramSpec:
        if len(self.weights) != len(self.edges) - 1:
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) - 1} weights, got {len(self.weights)}; "
                "give one weight per bin"
            )
        return self


def _check_range(value: list[float], what: str) -> None:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{what} [{lo:g}, {hi:g}] has lo > hi; swap them")
    if lo < -MAX_ABS_ANGLE or hi > MAX_ABS_ANGLE:
        raise ValueError(f"{what} [{lo:g}, {hi:g}] leaves [-{MAX_ABS_ANGLE:g}, {MAX_ABS_ANGLE:g}] degrees; narrow it")


class PoseAxis(StrictModel):
    """One angle's distribution (degrees): exactly one of uniform / normal / histogram.

    A bare number is a constant angle. `bins` is how many equal-width strata a uniform or normal
    distribution is split into: each stratum gets its exact (rounded) share of the rows.
    """

    uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    normal: NormalSpec | None = None
    histogram: HistogramSpec | None = None
    bins: int = Field(10, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _constant(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"angle {value!r} is not a finite number; write degrees, e.g. 0 or 15")
            return {"uniform": [float(value), float(value)], "bins": 1}
        return value

    @field_validator("uniform")
    @classmethod
    def _uniform(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            _check_range(value, "uniform")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> PoseAxis:
        given = [n for n in ("uniform", "normal", "histogram") if getattr(self, n) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ValueError(
                f"give exactly one of uniform: [lo, hi] / normal: {{mean, std, clip}} / "
                f"histogram: {{edges, weights}} (got {got}); keep one"
            )
        return self


class Pose(StrictModel):
    yaw: PoseAxis = Field(default_factory=lambda: PoseAxis(uniform=[0.0, 0.0], bins=1))
    pitch: PoseAxis = Field(default_factory=lambda: PoseAxis(uniform=[0.0, 0.0], bins=1))
    roll: PoseAxis = Field(default_factory=lambda: PoseAxis(uniform=[0.0, 0.0], bins=1))


class Expression(StrictModel):
    """Where the landmark expression comes from: an exemplar bank, or (`neutral`) the template."""

    exemplars: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _neutral(cls, value: Any) -> Any:
        if value == "neutral":
            return {}
        if isinstance(value, str):
            raise ValueError(f"unknown expression source {value!r}; use `neutral` or `exemplars: bank.parquet`")
        return value

    @field_validator("exemplars", mode="before")
    @classmethod
    def _bank(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"exemplar bank {path} does not exist; run `facegen extract` to make one or use `expression: neutral`")
        return path


class Targets(StrictModel):
    emotion: EmotionProbs = Field(default_factory=lambda: EmotionProbs.model_validate("uniform"))
    valence_arousal: ValenceArousalOverrides = Field(default_factory=ValenceArousalOverrides)
    pose: Pose = Field(default_factory=Pose)
    expression: Expression = Field(default_factory=Expression)
    #: One control set for every sample, or a distribution over them.
    controls: dict[str, float] = Field(default_factory=lambda: {"id+lmk+emo": 1.0})

    @field_validator("controls", mode="before")
    @classmethod
    def _controls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {value: 1.0}
        if isinstance(value, dict):
            for key, prob in value.items():
                if key not in CONTROL_SETS:
                    raise ValueError(f"unknown control set {key!r}; use one of {', '.join(CONTROL_SETS)}")
                if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
                    raise ValueError(f"probability of {key!r} is {prob!r}; give a number in [0, 1]")
            _check_sums_to_one({k: float(v) for k, v in value.items()}, "controls")
            return {k: float(value.get(k, 0.0)) for k in CONTROL_SETS}
        return value

    def controls_list(self) -> list[float]:
        return [float(self.controls.get(name, 0.0)) for name in CONTROL_SETS]


# --------------------------------------------------------------------------------------- balance
class Balance(StrictModel):
    """Top-up: make source + synthetic as close to `targets.emotion` as `total` new images allow."""

    source: Path
    #: Column of the source labels holding the emotion (class names or 0..7 indices).
    column: str = "emotion"
    total: int = Field(ge=1)

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> Path:
        path = _resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"label file {path} does not exist; point it at the existing dataset's labels.parquet")
        if path.suffix.lower() != ".parquet":
            raise ValueError(f"{path.name} is not a .parquet file; export the labels to Parquet")
        return path


# ---------------------------------------------------------------------------------------- verify
#: `verify.mode`: off = nothing measured; measure = every image measured and kept (accepted / reject_reason
#: say whether it is within tolerance); reject = images outside tolerance go to rejects.parquet, not the
#: dataset; regenerate = as reject, then their plan rows are made again with new seeds, round after round.
VERIFY_MODES = ("off", "measure", "reject", "regenerate")
#: Attributes an in-loop estimator measures -> the analysis-registry kind whose backends may measure it.
VERIFY_ATTRIBUTES = {"pose": "landmarks", "landmarks": "landmarks", "emotion": "emotion", "identity": "identity"}


#: Backend names per registry kind that may measure in the loop (the `facegen.analysis` registry's,
#: without dlib: its embeddings are not in the plan's identity space). Kept here so the manifest layer
#: does not import the analysis backends; tests/verify_loop checks it against the registry.
VERIFY_BACKENDS = {
    "landmarks": ("mediapipe", "synthface"),
    "emotion": ("emonet", "hsemotion", "synthface"),
    "identity": ("arcface", "synthface"),
}


def _estimator_name(value: Any, attribute: str) -> Any:
    """A backend of the attribute's kind, `auto` or `none` (weights are checked by the runner)."""
    allowed = sorted({"auto", "none", *VERIFY_BACKENDS[VERIFY_ATTRIBUTES[attribute]]})
    if not isinstance(value, str) or value not in allowed:
        hint = " (dlib embeddings do not live in the plan's identity space)" if value == "dlib" else ""
        raise ValueError(f"unknown {attribute} estimator {value!r}{hint}; use one of {', '.join(allowed)}")
    return value


class VerifyEstimators(StrictModel):
    """Which analysis backend measures each attribute (`facegen.analysis` registry names). `auto`: the
    synthface proxy for synthface models, else MediaPipe (pose, landmarks), the first of EmoNet / HSEmotion
    whose weights exist (emotion) and ArcFace when its weights exist (identity), else `none`."""

    pose: str = "auto"
    landmarks: str = "auto"
    emotion: str = "auto"
    identity: str = "auto"

    @field_validator("pose", "landmarks", "emotion", "identity", mode="before")
    @classmethod
    def _known(cls, value: Any, info: ValidationInfo) -> Any:
        return _estimator_name(value, info.field_name)


class VerifyTolerances(StrictModel):
    """How far a measurement may be from its target. A null tolerance is not checked. Pose and landmarks
    are checked on rows whose controls include `lmk`, emotion on rows whose controls include `emo`,
    identity on every row; a face the estimators do not find is always out of tolerance."""

    #: max |measured - target| over yaw, pitch and roll, degrees.
    pose_deg: float | None = Field(15.0, gt=0.0, le=180.0)
    #: `match`: each measured angle must lie in the target's stratum of its axis (`targets.pose` bins;
    #: constant axes are left to pose_deg), so the measured-accepted images fill the pose bins they
    #: count for; `off`: not checked. Left out of model_dump while off (fingerprints stay as they were).
    pose_stratum: Literal["match", "off"] = Field("off", exclude_if=lambda v: v == "off")
    #: mean 2D landmark distance to the target landmarks / target outer-eye-corner distance.
    landmark_nme: float | None = Field(None, gt=0.0)
    #: `match`: the measured emotion class must be the target class; `off`: not checked.
    emotion: Literal["match", "off"] = "match"
    #: measured probability of the target class must be at least this (0 = not checked).
    emotion_min_prob: float = Field(0.0, ge=0.0, le=1.0)
    #: cosine similarity of the image's identity embedding to the identity's reference vector.
    identity_min_similarity: float | None = Field(None, ge=-1.0, le=1.0)

    @field_validator("emotion", "pose_stratum", mode="before")
    @classmethod
    def _match_or_off(cls, value: Any, info: ValidationInfo) -> Any:
        if value is False or value is None:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if isinstance(value, str) and value not in ("match", "off"):
            what = "class" if info.field_name == "emotion" else "stratum"
            raise ValueError(f"unknown {info.field_name} tolerance {value!r}; use match ({what} must match) or off")
        return value


class Verify(StrictModel):
    """Measure every generated image inside the generation actors, and keep / reject / regenerate it."""

    mode: Literal["off", "measure", "reject", "regenerate"] = "off"
    estimators: VerifyEstimators = Field(default_factory=VerifyEstimators)
    tolerances: VerifyTolerances = Field(default_factory=VerifyTolerances)
    #: regenerate: rounds in all (round 0 is the plan itself; 1 = no regeneration).
    max_rounds: int = Field(3, ge=1, le=99)
    #: regenerate: images generated over all rounds may reach this multiple of the plan's rows.
    max_total_factor: float = Field(2.0, ge=1.0, le=100.0)
    #: folder of bring-your-own estimator weights (default: $FACEGEN_MODELS, else ~/.cache/facegen/models).
    models_dir: Path | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value is False:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if isinstance(value, str) and value not in VERIFY_MODES:
            raise ValueError(f"unknown mode {value!r}; use one of {', '.join(VERIFY_MODES)}")
        return value

    @field_validator("models_dir", mode="before")
    @classmethod
    def _models(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if not path.is_dir():
            raise ValueError(f"folder {path} does not exist; point it at the folder holding the estimator weights")
        return path

    @model_validator(mode="after")
    def _tolerances_have_estimators(self) -> Verify:
        t, e = self.tolerances, self.estimators
        needs = (
            ("pose_deg", t.pose_deg is not None, "pose"),
            ("pose_stratum", t.pose_stratum == "match", "pose"),
            ("landmark_nme", t.landmark_nme is not None, "landmarks"),
            ("emotion", t.emotion == "match" or t.emotion_min_prob > 0, "emotion"),
            ("identity_min_similarity", t.identity_min_similarity is not None, "identity"),
        )
        if self.mode == "off":
            return self
        for tolerance, checked, attribute in needs:
            if checked and getattr(e, attribute) == "none":
                raise ValueError(
                    f"tolerances.{tolerance} is checked but estimators.{attribute} is none; "
                    f"choose an estimator for {attribute} or set the tolerance to null/off"
                )
        return self


# ---------------------------------------------------------------------------------------- limits
class Limits(StrictModel):
    """Raise the dataset-size caps for this manifest (defaults: FACEGEN_MAX_IMAGES / _IDENTITIES,
    else 100,000,000 images and 100,000 identities; see facegen/manifest/limits.py)."""

    max_images: int | None = Field(None, ge=1)
    max_identities: int | None = Field(None, ge=1)


# -------------------------------------------------------------------------------------- manifest
class Manifest(StrictModel):
    version: Literal[1]
    seed: int = Field(0, ge=0, le=2**63 - 1)
    #: `tiny` (built-in preset, built on first use) or a model folder.
    model: str = "tiny"  # built-in presets: `synthface` (trained, shipped) and `tiny` (random, tests); or a folder
    sampler: Sampler = Field(default_factory=Sampler)
    output: Output = Field(default_factory=Output)
    identities: Identities
    images_per_identity: int | None = Field(None, ge=1)
    targets: Targets = Field(default_factory=Targets)
    balance: Balance | None = None
    #: In-loop measuring (see Verify). Left out of model_dump while absent, so manifests without it keep
    #: their run fingerprint.
    verify: Verify | None = Field(None, exclude_if=lambda v: v is None)
    #: Caps on the plan's size; they never change the samples, so they stay out of model_dump (and the
    #: run fingerprint): raising a cap does not make a finished dataset "a different manifest".
    limits: Limits = Field(default_factory=Limits, exclude=True)

    # Where the manifest came from, for errors raised after validation (set by `load_manifest`).
    _source: str = PrivateAttr("<manifest>")
    _lines: dict = PrivateAttr(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths were resolved against."""
        return Path(self._source).resolve().parent if self._source != "<manifest>" else Path.cwd()

    def where(self, *path: str | int) -> str:
        """`file.yaml:LINE` of the deepest written key along `path` (for error messages)."""
        from facegen.manifest.yaml_lines import line_for

        line, _ = line_for(self._lines, tuple(path))
        return f"{self._source}:{line}" if line else self._source

    def error(self, path: tuple[str | int, ...], problem: str) -> FacegenError:
        """A one-line user error about the field at `path`; `problem` reads "<what>; <what to do>"."""
        return FacegenError(f"{'.'.join(map(str, path))}: {problem}", where=self.where(*path))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any, info: ValidationInfo) -> Any:
        if value in ("tiny", "synthface") or not isinstance(value, str):
            return value  # built-in presets; non-strings fail the str type check with a clear message
        return str(_resolve_path(value, info))
