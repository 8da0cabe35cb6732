"""Ship a trained synthface model as the built-in `synthface` preset (fp16 safetensors, <= 40 MB).

The preset lives inside the package (``facegen/presets/synthface/``, the diffusers-native model
folder) so `model: synthface` in a manifest needs no download and no build step. Weights are stored
in float16 and loaded back as float32; the folder's provenance records how it was made (configs,
seeds, source commit, metrics).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import torch

from facegen.errors import FacegenError

PRESET_NAME = "synthface"
MAX_PRESET_BYTES = 40 * 2**20


def preset_dir() -> Path:
    """Where the shipped preset lives inside the installed package."""
    from facegen.model.presets import shipped_preset_dir

    return shipped_preset_dir(PRESET_NAME)


def source_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def ship_model(
    model_dir: str | Path, out_dir: str | Path, build: dict[str, Any], *, overwrite: bool = True,
    scheduler: str | None = None,
) -> Path:
    """Write `model_dir` as a float16 preset folder at `out_dir` with `build` in its provenance; `scheduler`
    (a sampler name) replaces the folder's own sampler."""
    from facegen.model.folder import staged_dir
    from facegen.model.pipeline import FaceCrafterPipeline

    pipe = FaceCrafterPipeline.from_pretrained(model_dir)
    if scheduler is not None:
        from facegen.model.schedulers import scheduler_from_name

        pipe.scheduler = scheduler_from_name(scheduler, pipe.scheduler.config)
    provenance = dict(pipe.config.get("provenance") or {})
    provenance["build"] = {**build, "source_commit": source_commit()}
    pipe.register_to_config(model_name=PRESET_NAME, provenance=provenance)
    pipe.to(torch.float16)
    out_dir = Path(out_dir)
    with staged_dir(out_dir, overwrite=overwrite) as tmp:
        pipe.save_pretrained(tmp)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    if size > MAX_PRESET_BYTES:
        raise FacegenError(f"preset is {size / 2**20:.1f} MiB, over the {MAX_PRESET_BYTES / 2**20:.0f} MiB budget", where=str(out_dir))
    return out_dir
