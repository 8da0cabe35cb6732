"""An exponential moving average of the trainable parameters (what a diffusion model is sampled with).

Diffusion models are sampled from an EMA of their weights (DDPM, LDM, Stable Diffusion's training): the
raw weights at any one step carry that step's gradient noise, which shows up as blotchy, incoherent
samples, most of all with small batches. ``ema_decay`` in a stage config turns it on; the average is kept
in float32 beside the parameters, updated after every optimiser step with the warm-up
``decay_n = min(ema_decay, (1 + n) / (10 + n))`` (n = updates so far) so that a fresh average is not
dominated by its starting point, saved as ``ema.safetensors`` in each checkpoint and exported in place of
the raw weights.
"""

from __future__ import annotations

import torch


class ParameterEMA:
    """The float32 moving average of named parameters; `update` after each optimiser step."""

    def __init__(self, params: dict[str, torch.Tensor], decay: float, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1); got {decay}")
        self.decay, self.updates = float(decay), int(updates)
        self.shadow = {n: p.detach().to(dtype=torch.float32).clone() for n, p in params.items()}

    @torch.no_grad()
    def reset(self, params: dict[str, torch.Tensor]) -> None:
        """Restart the average at `params` (no updates folded in yet)."""
        for name, value in params.items():
            self.shadow[name].copy_(value.detach())
        self.updates = 0

    def current_decay(self) -> float:
        """The decay of the next update (the warm-up in the module docstring)."""
        n = self.updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor]) -> None:
        decay = self.current_decay()
        for name, value in params.items():
            self.shadow[name].lerp_(value.detach().to(self.shadow[name]), 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.detach().cpu().contiguous() for n, t in self.shadow.items()}

    def load_state_dict(self, saved: dict[str, torch.Tensor], updates: int) -> None:
        missing = set(self.shadow) - set(saved)
        if missing:
            raise KeyError(f"saved EMA lacks {len(missing)} parameters, e.g. {sorted(missing)[0]}")
        for name, target in self.shadow.items():
            target.copy_(saved[name].to(target))
        self.updates = int(updates)
