"""FaceCrafterPipeline: batched compositional classifier-free guidance (FaceCrafter eq. 6).

    e = e(x) + wID (e(x,id) - e(x)) + wLMK (e(x,id,lmk) - e(x,id)) + wEMO (e(x,id,emo) - e(x,id))

Per step, every branch every sample needs (uncond, id, and id+lmk / id+emo only where that sample
uses them) goes through ONE batched UNet call. Each sample's initial noise (and DDPM's step noise)
comes from its own `torch.Generator(seed)`, and every op is per-sample, so an image depends only on
its own conditions and seed, not on its batch mates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from facegen.errors import FacegenError
from facegen.labels import EMOTION_VECTOR_DIM, ID_EMBED_DIM
from facegen.model.loading import FaceCrafterComponents, load_components, model_hash

SchedulerName = Literal["dpmpp", "ddim", "ddpm"]
SCHEDULERS: tuple[str, ...] = ("dpmpp", "ddim", "ddpm")


@dataclass(frozen=True)
class GuidanceWeights:
    """Control scales of eq. 6."""

    id: float = 2.5
    lmk: float = 2.0
    emo: float = 2.0


@dataclass
class FaceCrafterOutput:
    images: np.ndarray  # uint8 (B, H, W, 3)
    settings: list[dict[str, Any]]


@dataclass(frozen=True)
class BranchPlan:
    """Which UNet rows a step evaluates: `rows[i]` = (sample index, branch name)."""

    rows: list[tuple[int, str]]

    @classmethod
    def for_samples(cls, use_lmk: Sequence[bool], use_emo: Sequence[bool]) -> BranchPlan:
        rows: list[tuple[int, str]] = []
        for i, (lmk, emo) in enumerate(zip(use_lmk, use_emo)):
            rows += [(i, "uncond"), (i, "id")]
            if lmk:
                rows.append((i, "lmk"))
            if emo:
                rows.append((i, "emo"))
        return cls(rows)

    def index(self, branch: str, num_samples: int) -> torch.Tensor:
        """Row index of `branch` for every sample (-1 where the sample has no such row)."""
        index = torch.full((num_samples,), -1, dtype=torch.long)
        for row, (sample, name) in enumerate(self.rows):
            if name == branch:
                index[sample] = row
        return index


def make_scheduler(name: str, config: dict[str, Any]) -> SchedulerMixin:
    """A fresh scheduler of the given kind from the model's scheduler config."""
    config = {k: v for k, v in config.items() if k != "_class_name"}
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    raise FacegenError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}", where="scheduler")


def combine_guidance(
    eps: torch.Tensor, plan: BranchPlan, num_samples: int, guidance: GuidanceWeights
) -> torch.Tensor:
    """Eq. 6 from the rows of one batched UNet output (rows ordered as `plan.rows`)."""
    uncond = eps[plan.index("uncond", num_samples)]
    ident = eps[plan.index("id", num_samples)]
    out = uncond + guidance.id * (ident - uncond)
    for branch, weight in (("lmk", guidance.lmk), ("emo", guidance.emo)):
        index = plan.index(branch, num_samples)
        has = index >= 0
        if has.any():
            delta = torch.zeros_like(out)
            delta[has] = eps[index[has]] - ident[has]
            out = out + weight * delta
    return out


class FaceCrafterPipeline:
    """Identity-conditional face generation with switchable landmark / emotion control."""

    def __init__(self, components: FaceCrafterComponents, model_dir: str | Path | None = None) -> None:
        self.components = components
        self.unet = components.unet
        self.vae = components.vae
        self.identity_encoder = components.identity_encoder
        self.landmark = components.landmark
        self.emotion = components.emotion
        info = components.info
        self.resolution: int = info.resolution
        self.landmark_image_size: int = info.landmark_image_size
        self.default_scheduler: str = info.default_scheduler
        self.default_steps: int = info.default_steps
        self.model_id: str = info.name
        self.model_hash: str = model_hash(model_dir) if model_dir is not None else "unsaved"
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32
    ) -> FaceCrafterPipeline:
        """Load a facegen model folder (see `facegen.model.loading`)."""
        return cls(load_components(model_dir, device=device, torch_dtype=torch_dtype), model_dir)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> FaceCrafterPipeline:
        self.components.to(device, dtype)
        return self

    # ---- conditions -------------------------------------------------------------------------

    def encode_conditions(
        self,
        id_embeds: torch.Tensor,
        landmark_images: torch.Tensor | None,
        emotions: torch.Tensor | None,
        use_lmk: torch.Tensor,
        use_emo: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Per-sample contexts and control tokens: id/uncond (B,77,W), lmk (B,N,d), emo (B,M,d_e)."""
        device, dtype = self.device, self.dtype
        batch = id_embeds.shape[0]
        out = {
            "id": self.identity_encoder(id_embeds.to(device, dtype)),
            "uncond": self.identity_encoder.encode_uncond(batch),
            "lmk": torch.zeros(batch, self.landmark.num_tokens, self.landmark.config.token_dim, device=device, dtype=dtype),
            "emo": torch.zeros(
                batch, self.emotion.config.num_tokens, self.emotion.config.token_dim, device=device, dtype=dtype
            ),
        }
        if use_lmk.any():
            chosen = use_lmk.nonzero().flatten().to(device)
            out["lmk"][chosen] = self.landmark(landmark_images.to(device, dtype)[chosen])
        if use_emo.any():
            chosen = use_emo.nonzero().flatten().to(device)
            out["emo"][chosen] = self.emotion(emotions.to(device, dtype)[chosen])
        return out

    def unet_rows(
        self, latents: torch.Tensor, t: torch.Tensor, plan: BranchPlan, conditions: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """One batched UNet call over every (sample, branch) row of the plan."""
        samples = torch.tensor([s for s, _ in plan.rows], dtype=torch.long, device=latents.device)
        branches = [b for _, b in plan.rows]
        context = torch.stack(
            [conditions["uncond" if b == "uncond" else "id"][s] for s, b in plan.rows]
        )
        lmk_scale = torch.tensor([1.0 if b == "lmk" else 0.0 for b in branches], device=latents.device)
        emo_scale = torch.tensor([1.0 if b == "emo" else 0.0 for b in branches], device=latents.device)
        kwargs = {
            "lmk_tokens": conditions["lmk"][samples],
            "emo_tokens": conditions["emo"][samples],
            "lmk_scale": lmk_scale,
            "emo_scale": emo_scale,
        }
        return self.unet(latents[samples], t, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample

    # ---- generation ---------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        id_embeds: torch.Tensor,
        landmark_images: torch.Tensor | None = None,
        emotions: torch.Tensor | None = None,
        use_lmk: torch.Tensor | None = None,
        use_emo: torch.Tensor | None = None,
        seeds: Sequence[int] = (),
        num_inference_steps: int | None = None,
        guidance: GuidanceWeights = GuidanceWeights(),
        scheduler: SchedulerName | None = None,
        height: int | None = None,
        width: int | None = None,
        progress: bool = False,
    ) -> FaceCrafterOutput:
        """Generate one image per row of `id_embeds`; see the module docstring for eq. 6."""
        batch = int(id_embeds.shape[0]) if id_embeds.ndim == 2 else -1
        if id_embeds.ndim != 2 or id_embeds.shape[1] != ID_EMBED_DIM:
            raise FacegenError(f"must have shape (B, {ID_EMBED_DIM}); got {tuple(id_embeds.shape)}", where="id_embeds")
        seeds = [int(s) for s in seeds]
        if len(seeds) != batch:
            raise FacegenError(f"need one seed per sample ({batch}); got {len(seeds)}", where="seeds")
        use_lmk = _flags(use_lmk, landmark_images, batch, "use_lmk")
        use_emo = _flags(use_emo, emotions, batch, "use_emo")
        if use_lmk.any():
            size = self.landmark_image_size
            if landmark_images is None or tuple(landmark_images.shape) != (batch, 3, size, size):
                got = None if landmark_images is None else tuple(landmark_images.shape)
                raise FacegenError(f"must have shape ({batch}, 3, {size}, {size}); got {got}", where="landmark_images")
            if not torch.is_floating_point(landmark_images):
                raise FacegenError(f"must be float in [0, 1]; got {landmark_images.dtype}", where="landmark_images")
        if use_emo.any() and (emotions is None or tuple(emotions.shape) != (batch, EMOTION_VECTOR_DIM)):
            got = None if emotions is None else tuple(emotions.shape)
            raise FacegenError(f"must have shape ({batch}, {EMOTION_VECTOR_DIM}); got {got}", where="emotions")
        scheduler_name = scheduler or self.default_scheduler
        steps = int(num_inference_steps or self.default_steps)
        height = int(height or self.resolution)
        width = int(width or self.resolution)
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise FacegenError(f"height/width must be multiples of {self.vae_scale_factor}", where="height/width")

        sched = make_scheduler(scheduler_name, self.components.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        latents = self.initial_latents(generators, height, width) * sched.init_noise_sigma
        conditions = self.encode_conditions(id_embeds, landmark_images, emotions, use_lmk, use_emo)
        plan = BranchPlan.for_samples(use_lmk.tolist(), use_emo.tolist())
        step_kwargs = {"generator": generators} if scheduler_name == "ddpm" else {}

        timesteps = sched.timesteps
        if progress:
            from tqdm.auto import tqdm

            timesteps = tqdm(timesteps, desc="denoising")
        # Latents, guidance and scheduler math stay float32; only the networks run in the model dtype.
        for t in timesteps:
            model_input = sched.scale_model_input(latents, t).to(self.dtype)
            eps_rows = self.unet_rows(model_input, t, plan, conditions).float()
            eps = combine_guidance(eps_rows, plan, batch, guidance)
            latents = sched.step(eps, t, latents, **step_kwargs).prev_sample

        images = self.decode(latents)
        settings = [
            {
                "seed": seeds[i],
                "use_lmk": bool(use_lmk[i]),
                "use_emo": bool(use_emo[i]),
                "guidance": asdict(guidance),
                "scheduler": scheduler_name,
                "num_inference_steps": steps,
                "height": height,
                "width": width,
                "model_id": self.model_id,
                "model_hash": self.model_hash,
            }
            for i in range(batch)
        ]
        return FaceCrafterOutput(images=images, settings=settings)

    def initial_latents(self, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
        """Per-sample noise, drawn on CPU from each sample's own generator (device-independent)."""
        shape = (1, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        return noise.to(self.device)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents -> uint8 (B, H, W, 3). The VAE decoder is per-sample (GroupNorm, no batch stats)."""
        scaled = (latents / self.vae.config.scaling_factor).to(self.vae.dtype)
        images = self.vae.decode(scaled).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        return (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def _flags(flags: torch.Tensor | None, values: torch.Tensor | None, batch: int, name: str) -> torch.Tensor:
    if flags is None:
        return torch.full((batch,), values is not None, dtype=torch.bool)
    flags = torch.as_tensor(flags).bool().cpu()
    if flags.shape != (batch,):
        raise FacegenError(f"must have shape ({batch},); got {tuple(flags.shape)}", where=name)
    return flags
