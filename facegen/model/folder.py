"""Model folders on disk: the two layouts, their description (`ModelInfo`), atomic writes and the hash.

Layout 2 (written by every facegen command since the pipeline became a `diffusers.DiffusionPipeline`)::

    model_index.json   FaceCrafterPipeline: component classes + resolution, landmark image size, ID prompt,
                       guidance / step defaults, model name, provenance (what `DiffusionPipeline` loads)
    facegen.json       {"format": "facegen-model", "format_version": 2}: marks a facegen model folder
    unet/  vae/  text_encoder/  tokenizer/  scheduler/  landmark/  emotion/

Layout 1 (older folders; still loaded, and `facegen model convert OLD NEW` rewrites them)::

    facegen.json       format 1: parts, resolution, landmark image size, scheduler name, guidance, source
    unet/  encoder/  vae/  tokenizer/  scheduler/ (the trained scheduler config)  landmark/  emotion/
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facegen.errors import FacegenError
from facegen.model.guidance import GuidanceWeights
from facegen.model.identity import ID_PROMPT, ID_TOKEN

FORMAT_NAME = "facegen-model"
FORMAT_VERSION = 2
INFO_FILE = "facegen.json"
MODEL_INDEX = "model_index.json"
PIPELINE_CLASS = "FaceCrafterPipeline"
PARTS = ("unet", "encoder", "vae", "tokenizer", "scheduler", "landmark", "emotion")
#: part -> sub-folder, per layout (layout 2 uses the diffusers component names).
LAYOUT_PARTS: dict[int, dict[str, str]] = {
    1: {p: p for p in PARTS},
    2: {**{p: p for p in PARTS}, "encoder": "text_encoder"},
}
#: Keys of the top-level JSON files that record provenance, not behaviour (left out of the hash).
PROVENANCE_KEYS = {INFO_FILE: ("source",), MODEL_INDEX: ("provenance", "_name_or_path")}

_DEFAULT_GUIDANCE = GuidanceWeights()


class GuidanceDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: float = _DEFAULT_GUIDANCE.id
    lmk: float = _DEFAULT_GUIDANCE.lmk
    emo: float = _DEFAULT_GUIDANCE.emo


class ModelInfo(BaseModel):
    """What a loader needs to know about a folder: the schema of a layout-1 `facegen.json`, and the
    same view of a layout-2 folder (read from `model_index.json`)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["facegen-model"] = FORMAT_NAME
    format_version: int = 1
    name: str
    parts: dict[str, str] = Field(default_factory=lambda: dict(LAYOUT_PARTS[1]))
    resolution: int = Field(gt=0)
    landmark_image_size: int = Field(gt=0)
    id_prompt: str = ID_PROMPT
    id_token: str = ID_TOKEN
    default_scheduler: Literal["dpmpp", "ddim", "ddpm", "dpmpp-sde"] | None = "dpmpp"  # layout 1 only
    default_steps: int = Field(25, gt=0)
    guidance: GuidanceDefaults = Field(default_factory=GuidanceDefaults)
    source: dict[str, Any] = Field(default_factory=dict)


def pipeline_config(info: ModelInfo) -> dict[str, Any]:
    """The FaceCrafterPipeline config values (`register_to_config`) a ModelInfo describes."""
    return {
        "resolution": info.resolution,
        "landmark_image_size": info.landmark_image_size,
        "id_prompt": info.id_prompt,
        "id_token": info.id_token,
        "guidance_id": info.guidance.id,
        "guidance_lmk": info.guidance.lmk,
        "guidance_emo": info.guidance.emo,
        "num_inference_steps": info.default_steps,
        "model_name": info.name,
        "provenance": dict(info.source),
    }


def info_from_pipeline_config(config: dict[str, Any]) -> ModelInfo:
    """The ModelInfo view of a FaceCrafterPipeline config (`model_index.json` contents)."""
    get = config.get
    return ModelInfo(
        format_version=FORMAT_VERSION,
        name=get("model_name", "facecrafter"),
        parts=dict(LAYOUT_PARTS[2]),
        resolution=get("resolution"),
        landmark_image_size=get("landmark_image_size"),
        id_prompt=get("id_prompt", ID_PROMPT),
        id_token=get("id_token", ID_TOKEN),
        default_scheduler=None,
        default_steps=get("num_inference_steps", 25),
        guidance=GuidanceDefaults(
            id=get("guidance_id", _DEFAULT_GUIDANCE.id),
            lmk=get("guidance_lmk", _DEFAULT_GUIDANCE.lmk),
            emo=get("guidance_emo", _DEFAULT_GUIDANCE.emo),
        ),
        source=dict(get("provenance") or {}),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FacegenError(f"invalid JSON ({exc.msg} at line {exc.lineno})", where=str(path)) from None
    if not isinstance(raw, dict):
        raise FacegenError("expected a JSON object", where=str(path))
    return raw


def _validation_error(exc: ValidationError, where: Path) -> FacegenError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return FacegenError(f"field {field!r}: {first['msg']}", where=str(where))


def folder_layout(model_dir: str | Path) -> int:
    """1 or 2 (see the module docstring); FacegenError if `model_dir` is not a facegen model folder."""
    path = Path(model_dir) / INFO_FILE
    if not path.is_file():
        raise FacegenError(
            "not a facegen model folder (no facegen.json); create one with `facegen model init`", where=str(path)
        )
    raw = _read_json(path)
    version = raw.get("format_version", 1)
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME or not isinstance(version, int):
        raise FacegenError(f"not a {FORMAT_NAME} file (format/format_version)", where=str(path))
    if version > FORMAT_VERSION:
        raise FacegenError(
            f"format_version {version} is newer than this facegen supports ({FORMAT_VERSION})", where=str(path)
        )
    return 1 if version < 2 else 2


def read_model_info(model_dir: str | Path) -> ModelInfo:
    """Read and validate a model folder of either layout; FacegenError naming the file/field otherwise."""
    model_dir = Path(model_dir)
    if folder_layout(model_dir) == 1:
        try:
            info = ModelInfo.model_validate(_read_json(model_dir / INFO_FILE))
        except ValidationError as exc:
            raise _validation_error(exc, model_dir / INFO_FILE) from None
    else:
        index = model_dir / MODEL_INDEX
        if not index.is_file():
            raise FacegenError(f"missing {MODEL_INDEX}; the folder is incomplete, re-create it", where=str(model_dir))
        config = _read_json(index)
        if config.get("_class_name") != PIPELINE_CLASS:
            raise FacegenError(f"_class_name must be {PIPELINE_CLASS!r}; got {config.get('_class_name')!r}", where=str(index))
        try:
            info = info_from_pipeline_config(config)
        except ValidationError as exc:
            raise _validation_error(exc, index) from None
    missing = [p for p in PARTS if not (model_dir / info.parts.get(p, p)).is_dir()]
    if missing:
        raise FacegenError(f"missing part folder(s): {', '.join(missing)}", where=str(model_dir))
    return info


def write_folder_marker(model_dir: str | Path) -> None:
    """`facegen.json` of a layout-2 folder (everything else lives in `model_index.json`)."""
    marker = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    (Path(model_dir) / INFO_FILE).write_text(json.dumps(marker, indent=2) + "\n")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' and diffusers' per-file progress bars (loading/saving) inside the block."""
    from diffusers.utils import logging as df_logging
    from transformers.utils import logging as hf_logging

    hf_was, df_was = hf_logging.is_progress_bar_enabled(), df_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    df_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hf_was:
            hf_logging.enable_progress_bar()
        if df_was:
            df_logging.enable_progress_bar()


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


def _without_provenance(path: Path, keys: tuple[str, ...]) -> bytes:
    info = json.loads(path.read_text())
    for key in keys:
        info.pop(key, None)
    return json.dumps(info, sort_keys=True).encode()


def model_hash(model_dir: str | Path) -> str:
    """sha256 over every file's relative path and bytes (first 16 hex chars); cached per file stats.

    Provenance (`facegen.json` `source`, `model_index.json` `provenance`) is left out, so the same
    weights in another folder or assembled from another download path hash the same.
    """
    model_dir = Path(model_dir).resolve()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = tuple((str(p.relative_to(model_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(model_dir), stats)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
            if path.parent == model_dir and path.name in PROVENANCE_KEYS:
                digest.update(_without_provenance(path, PROVENANCE_KEYS[path.name]))
                continue
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()[:16]
    return _HASH_CACHE[key]
