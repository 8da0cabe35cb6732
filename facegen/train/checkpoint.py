"""Training checkpoints: trainable weights (safetensors), optimiser state, step and data position.

A checkpoint folder holds ``trainable.safetensors`` (exactly the stage's trainable parameters, named as
in :class:`facegen.train.trainee.Trainee`), ``optimizer.pt`` (read back with ``weights_only=True``) and
``state.json`` (stage, step, global data cursor, world size, seed, EMA updates) and, when the stage keeps
an EMA of its weights (`ema_decay`), ``ema.safetensors`` (the average, same names as the weights).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from facegen.errors import FacegenError

WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
EMA_FILE = "ema.safetensors"


@dataclass(frozen=True)
class TrainState:
    stage: str
    step: int  # optimiser steps done
    cursor: int  # global data cursor (stream positions consumed by all workers)
    world_size: int
    seed: int
    ema_updates: int = 0  # optimiser steps folded into ema.safetensors (0: no EMA in this checkpoint)


def save_checkpoint(
    directory: Path, weights: dict[str, torch.Tensor], optimizer_state: dict, state: TrainState,
    ema: dict[str, torch.Tensor] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in weights.items()}, str(directory / WEIGHTS_FILE))
    if ema is not None:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in ema.items()}, str(directory / EMA_FILE))
    torch.save(optimizer_state, directory / OPTIMIZER_FILE)
    (directory / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    return directory


def read_state(directory: Path) -> TrainState:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FacegenError(f"{path} missing; the checkpoint is incomplete — delete it or choose another run name")
    return TrainState(**json.loads(path.read_text()))


def load_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / WEIGHTS_FILE))


def load_ema(directory: Path) -> dict[str, torch.Tensor] | None:
    """The checkpoint's EMA weights, or None when it was trained without one."""
    path = Path(directory) / EMA_FILE
    return load_file(str(path)) if path.is_file() else None


def load_optimizer_state(directory: Path) -> dict:
    return torch.load(Path(directory) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
