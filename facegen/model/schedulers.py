"""The one table from facegen's sampler names (manifest `sampler.scheduler`, `--scheduler`) to diffusers schedulers.

Any other diffusers scheduler works too, the diffusers way::

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)

`scheduler_from_name("ddim", pipe.scheduler.config)` is exactly that with the class (and the fixed options)
taken from the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from facegen.errors import FacegenError

#: name -> (scheduler class, options fixed for that name). The first entry is the default.
SCHEDULER_TABLE: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "dpmpp": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    # Stochastic DPM-Solver++(2M): fresh noise every step corrects an imperfect model's errors where the
    # ODE solvers carry them to the end (the pixel-space synthface model: speckled, blobby faces with
    # dpmpp or ddim, clean ones with this or ddpm; README, synthface, "Pixel-space round 2").
    "dpmpp-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
}
SCHEDULERS: tuple[str, ...] = tuple(SCHEDULER_TABLE)
DEFAULT_SCHEDULER = SCHEDULERS[0]


def check_scheduler_name(name: str, where: str = "scheduler") -> str:
    """`name` if the table knows it, else a one-line FacegenError listing the choices."""
    if name not in SCHEDULER_TABLE:
        raise FacegenError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}", where=where)
    return name


def scheduler_from_name(name: str, config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh scheduler of the named kind built from a scheduler config (any diffusers scheduler's)."""
    cls, options = SCHEDULER_TABLE[check_scheduler_name(name)]
    return cls.from_config(dict(config), **options)


def scheduler_name(scheduler: SchedulerMixin) -> str:
    """The table name a scheduler matches (class and fixed options), else its class name."""
    for name, (cls, options) in SCHEDULER_TABLE.items():
        if type(scheduler) is cls and all(scheduler.config.get(k) == v for k, v in options.items()):
            return name
    return type(scheduler).__name__


def step_sigmas(scheduler: SchedulerMixin) -> list[float] | None:
    """Per timestep of a scheduler whose `set_timesteps` ran, the noise level sigma_t =
    sqrt((1 - alpha_bar_t) / alpha_bar_t) (what sigma guidance intervals compare against).
    None for a scheduler without `alphas_cumprod`."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        return None
    alphas = alphas.detach().double().cpu()
    out = []
    for t in scheduler.timesteps.detach().cpu().tolist():
        a = float(alphas[min(max(int(round(t)), 0), len(alphas) - 1)])
        out.append(((1.0 - a) / a) ** 0.5)
    return out
