"""The FaceCrafter model folder: `facegen.json` + diffusers/transformers sub-folders; load, save, hash.

Layout (same for the tiny preset and a real Arc2Face-based model)::

    facegen.json   format version, parts, default resolution, landmark image size, scheduler, guidance
    unet/          UNet2DConditionModel (stock Arc2Face weights, stock processors)
    encoder/       CLIPTextModel (the identity encoder's text transformer)
    vae/           AutoencoderKL
    tokenizer/     CLIPTokenizer (vocab.json + merges.txt)
    scheduler/     scheduler_config.json
    landmark/      LandmarkControlModule incl. its per-layer K/V (safetensors)
    emotion/       EmotionControlModule incl. its per-layer K/V (safetensors)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from safetensors import SafetensorError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.model.attention import install_facecrafter_attention
from facegen.model.controls import EmotionControlModule, LandmarkControlModule
from facegen.model.identity import ID_PROMPT, ID_TOKEN, IdentityEncoder

FORMAT_NAME = "facegen-model"
FORMAT_VERSION = 1
INFO_FILE = "facegen.json"
PARTS = ("unet", "encoder", "vae", "tokenizer", "scheduler", "landmark", "emotion")
SchedulerName = Literal["dpmpp", "ddim", "ddpm"]


class GuidanceDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: float = 2.5
    lmk: float = 2.0
    emo: float = 2.0


class ModelInfo(BaseModel):
    """Contents of `facegen.json`: everything a loader needs to know about the folder."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["facegen-model"] = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    name: str
    parts: dict[str, str] = Field(default_factory=lambda: {p: p for p in PARTS})
    resolution: int = Field(gt=0)
    landmark_image_size: int = Field(gt=0)
    id_prompt: str = ID_PROMPT
    id_token: str = ID_TOKEN
    default_scheduler: SchedulerName = "dpmpp"
    default_steps: int = Field(25, gt=0)
    guidance: GuidanceDefaults = Field(default_factory=GuidanceDefaults)
    source: dict[str, Any] = Field(default_factory=dict)


@dataclass
class FaceCrafterComponents:
    """All loaded parts of a model folder (control modules installed into the UNet's attention)."""

    info: ModelInfo
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    vae: AutoencoderKL
    scheduler_config: dict[str, Any]
    landmark: LandmarkControlModule
    emotion: EmotionControlModule
    identity_encoder: IdentityEncoder

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> FaceCrafterComponents:
        # (only pass what is given: diffusers warns whenever a dtype keyword is present)
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.unet, self.text_encoder, self.vae, self.landmark, self.emotion, self.identity_encoder):
            module.to(**kwargs)
        return self


def read_model_info(model_dir: str | Path) -> ModelInfo:
    """Read and validate `model_dir/facegen.json`; FacegenError naming the file/field otherwise."""
    path = Path(model_dir) / INFO_FILE
    if not path.is_file():
        raise FacegenError(
            "not a facegen model folder (no facegen.json); create one with `facegen model init`", where=str(path)
        )
    try:
        raw = json.loads(path.read_text())
        info = ModelInfo.model_validate(raw)
    except json.JSONDecodeError as exc:
        raise FacegenError(f"invalid JSON ({exc.msg} at line {exc.lineno})", where=str(path)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise FacegenError(f"field {field!r}: {first['msg']}", where=str(path)) from None
    if info.format_version > FORMAT_VERSION:
        raise FacegenError(
            f"format_version {info.format_version} is newer than this facegen supports ({FORMAT_VERSION})",
            where=str(path),
        )
    missing = [p for p in PARTS if not (Path(model_dir) / info.parts.get(p, p)).is_dir()]
    if missing:
        raise FacegenError(f"missing part folder(s): {', '.join(missing)}", where=str(model_dir))
    return info


def write_model_info(info: ModelInfo, model_dir: str | Path) -> None:
    (Path(model_dir) / INFO_FILE).write_text(json.dumps(info.model_dump(mode="json"), indent=2) + "\n")


def load_components(
    model_dir: str | Path, device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32
) -> FaceCrafterComponents:
    """Load every part of a model folder and install the FaceCrafter attention processors."""
    model_dir = Path(model_dir)
    info = read_model_info(model_dir)

    def part(name: str) -> str:
        return str(model_dir / info.parts[name])

    dtype_kw = {"torch_dtype": torch_dtype}
    try:
        with quiet_transformers():
            unet = UNet2DConditionModel.from_pretrained(part("unet"), use_safetensors=True, **dtype_kw)
            text_encoder = CLIPTextModel.from_pretrained(part("encoder"), use_safetensors=True, dtype=torch_dtype)
            tokenizer = CLIPTokenizer.from_pretrained(part("tokenizer"))
            vae = AutoencoderKL.from_pretrained(part("vae"), use_safetensors=True, **dtype_kw)
            landmark = LandmarkControlModule.from_pretrained(part("landmark"), use_safetensors=True, **dtype_kw)
            emotion = EmotionControlModule.from_pretrained(part("emotion"), use_safetensors=True, **dtype_kw)
        scheduler_config = _read_scheduler_config(Path(part("scheduler")))
    except (OSError, ValueError, SafetensorError) as exc:
        raise FacegenError(f"cannot load the model: {str(exc).splitlines()[0]}", where=str(model_dir)) from None
    install_facecrafter_attention(unet, landmark, emotion)
    identity = IdentityEncoder(text_encoder, tokenizer, info.id_prompt, info.id_token)
    components = FaceCrafterComponents(
        info, unet, text_encoder, tokenizer, vae, scheduler_config, landmark, emotion, identity
    )
    for module in (unet, text_encoder, vae, landmark, emotion):
        module.eval()
        module.requires_grad_(False)
    return components.to(device)


def save_components(components: FaceCrafterComponents, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a complete model folder atomically (temp folder, then rename)."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir, overwrite=overwrite) as tmp:
        info = components.info
        _save_unet_stock(components.unet, tmp / info.parts["unet"])
        with quiet_transformers():
            components.text_encoder.save_pretrained(tmp / info.parts["encoder"], safe_serialization=True)
        components.tokenizer.save_pretrained(tmp / info.parts["tokenizer"])
        components.vae.save_pretrained(tmp / info.parts["vae"], safe_serialization=True)
        components.landmark.save_pretrained(tmp / info.parts["landmark"], safe_serialization=True)
        components.emotion.save_pretrained(tmp / info.parts["emotion"], safe_serialization=True)
        scheduler_dir = tmp / info.parts["scheduler"]
        scheduler_dir.mkdir(parents=True, exist_ok=True)
        (scheduler_dir / "scheduler_config.json").write_text(json.dumps(components.scheduler_config, indent=2))
        write_model_info(info, tmp)
    return out_dir


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file progress bars (loading/saving) inside the block."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _save_unet_stock(unet: UNet2DConditionModel, path: Path) -> None:
    # The FaceCrafter processors hold no UNet weights, but restore stock processors while saving so the
    # file is exactly an Arc2Face/diffusers UNet; then put ours back.
    processors = unet.attn_processors
    unet.set_attn_processor(AttnProcessor2_0())
    try:
        unet.save_pretrained(path, safe_serialization=True)
    finally:
        unet.set_attn_processor(processors)


def _read_scheduler_config(path: Path) -> dict[str, Any]:
    config_path = path / "scheduler_config.json"
    if not config_path.is_file():
        raise FacegenError("missing scheduler_config.json", where=str(path))
    return json.loads(config_path.read_text())


class staged_dir:
    """Context manager: build a folder in a temp sibling and move it into place only on success."""

    def __init__(self, out_dir: Path, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise FacegenError("output path exists and is a file; choose a folder path for --out", where=str(out_dir))
        if self.out_dir.exists() and any(self.out_dir.iterdir()) and not overwrite:
            raise FacegenError("output folder exists and is not empty; choose a new --out", where=str(out_dir))

    def __enter__(self) -> Path:
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", dir=self.out_dir.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out_dir.exists():
            backup = self.out_dir.with_name(f".{self.out_dir.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(self.out_dir, backup)
            os.replace(self.tmp, self.out_dir)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out_dir)


_HASH_CACHE: dict[tuple, str] = {}


def _info_without_provenance(path: Path) -> bytes:
    # `source` records where parts came from (paths, training history): provenance, not behaviour.
    info = json.loads(path.read_text())
    info.pop("source", None)
    return json.dumps(info, sort_keys=True).encode()


def model_hash(model_dir: str | Path) -> str:
    """sha256 over every file's relative path and bytes (first 16 hex chars); cached per file stats.

    `facegen.json`'s `source` (provenance) is left out, so the same weights in another folder or
    assembled from another download path hash the same.
    """
    model_dir = Path(model_dir).resolve()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = tuple((str(p.relative_to(model_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(model_dir), stats)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
            if path.name == INFO_FILE and path.parent == model_dir:
                digest.update(_info_without_provenance(path))
                continue
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()[:16]
    return _HASH_CACHE[key]
