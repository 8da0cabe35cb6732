"""FaceCrafterPipeline: a `diffusers.DiffusionPipeline` with batched compositional guidance (eq. 6).

    e = e(x) + wID (e(x,id) - e(x)) + wLMK (e(x,id,lmk) - e(x,id)) + wEMO (e(x,id,emo) - e(x,id))

Registered components: `unet`, `vae`, `text_encoder` (the identity encoder's CLIP text transformer),
`tokenizer`, `scheduler`, `landmark`, `emotion`; the config holds resolution, landmark image size, ID
prompt, guidance and step defaults, the model name and provenance. The pipeline installs the switched
FaceCrafter attention processors itself (and checks them before every call), so no pipeline exists
whose landmark / emotion controls silently do nothing.

    from diffusers import DiffusionPipeline, EulerDiscreteScheduler
    import facegen.model.pipeline  # makes diffusers know FaceCrafterPipeline (and the control modules)
    pipe = DiffusionPipeline.from_pretrained("MODEL")                          # a FaceCrafterPipeline
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    images = pipe(id_embeds, landmark_images, emotions, generator=[g0, g1]).images

Per step, every branch every sample needs goes through ONE batched UNet call. With `seeds` (or a
per-sample list of CPU generators), each sample's initial noise (and any step noise) comes from its
own generator and every op is per-sample, so an image depends only on its own conditions and seed.
"""

# No `from __future__ import annotations` here: diffusers reads this class's __init__ annotations.

import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from safetensors import SafetensorError
from transformers import CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.labels import EMOTION_VECTOR_DIM, ID_EMBED_DIM
from facegen.model.attention import FaceCrafterAttnProcessor, cross_attention_layers, install_facecrafter_attention
from facegen.model.controls import EmotionControlModule, LandmarkControlModule
from facegen.model.folder import (
    MODEL_INDEX,
    folder_layout,
    model_hash,
    quiet_transformers,
    read_model_info,
    write_folder_marker,
)
from facegen.model.guidance import (
    BranchPlan,
    GuidanceIntervals,
    GuidanceWeights,
    combine_guidance,
    planned_rows,
    step_branches,
)
from facegen.model.identity import ID_PROMPT, ID_TOKEN, IdentityEncoder
from facegen.model.schedulers import SCHEDULERS, scheduler_from_name, scheduler_name, step_sigmas
from facegen.model.vae import Autoencoder, vae_scale_factor

_DEFAULT = GuidanceWeights()
OUTPUT_TYPES = ("pil", "np", "pt", "latent")

__all__ = [
    "SCHEDULERS",
    "BranchPlan",
    "FaceCrafterOutput",
    "FaceCrafterPipeline",
    "FaceCrafterPipelineOutput",
    "GuidanceIntervals",
    "GuidanceWeights",
    "combine_guidance",
    "rows_per_image",
    "to_uint8",
]


@dataclass
class FaceCrafterPipelineOutput(BaseOutput):
    """`images` as asked by `output_type` (PIL list, float (B,H,W,3) array, (B,3,H,W) tensor, or latents);
    `settings`: per sample, how it was made (seed, branches, guidance, guidance intervals, UNet rows it
    cost, scheduler, steps, size, model)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    settings: list[dict[str, Any]]


FaceCrafterOutput = FaceCrafterPipelineOutput  # the name before the pipeline became a DiffusionPipeline


def to_uint8(images: np.ndarray) -> np.ndarray:
    """`output_type="np"` images (float in [0, 1]) -> uint8, rounded exactly as the PIL output is."""
    return (np.asarray(images) * 255).round().astype(np.uint8)


class FaceCrafterPipeline(DiffusionPipeline):
    """Identity-conditional face generation with per-sample switchable landmark / emotion control."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    # The control modules' K/V run inside the UNet's forward: keep them on the execution device.
    _exclude_from_cpu_offload = ["landmark", "emotion"]
    _callback_tensor_inputs = ["latents"]
    _optional_components: list[str] = []

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: Autoencoder,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin,
        landmark: LandmarkControlModule,
        emotion: EmotionControlModule,
        resolution: int = 512,
        landmark_image_size: int = 256,
        id_prompt: str = ID_PROMPT,
        id_token: str = ID_TOKEN,
        guidance_id: float = _DEFAULT.id,
        guidance_lmk: float = _DEFAULT.lmk,
        guidance_emo: float = _DEFAULT.emo,
        num_inference_steps: int = 25,
        model_name: str = "facecrafter",
        provenance: dict | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
            landmark=landmark, emotion=emotion,
        )
        self.register_to_config(
            resolution=int(resolution),
            landmark_image_size=int(landmark_image_size),
            id_prompt=id_prompt,
            id_token=id_token,
            guidance_id=float(guidance_id),
            guidance_lmk=float(guidance_lmk),
            guidance_emo=float(guidance_emo),
            num_inference_steps=int(num_inference_steps),
            model_name=model_name,
            provenance=dict(provenance or {}),
        )
        self.vae_scale_factor = vae_scale_factor(vae)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.identity_encoder = IdentityEncoder(text_encoder, tokenizer, id_prompt, id_token)
        self.install_controls()
        self._controls_ready = True

    # ---- components and config ------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not self.__dict__.get("_controls_ready"):
            return
        if name in ("unet", "landmark", "emotion"):
            self.install_controls()
        elif name in ("text_encoder", "tokenizer"):
            frozen = self.identity_encoder.uncond_context  # eq. 6's stored e(x_t, t) context stays with the model
            self.identity_encoder = IdentityEncoder(self.text_encoder, self.tokenizer, self.config.id_prompt, self.config.id_token)
            if self.identity_encoder.uncond_context is None and frozen is not None:
                self.identity_encoder.uncond_context = frozen

    def install_controls(self) -> None:
        """Give every UNet cross-attention layer the switched FaceCrafter processor of this pipeline's modules."""
        install_facecrafter_attention(self.unet, self.landmark, self.emotion)

    def check_controls(self) -> None:
        """FacegenError unless every cross-attention layer runs this pipeline's landmark / emotion branches."""
        processors = self.unet.attn_processors
        for layer in cross_attention_layers(self.unet):
            proc = processors.get(f"{layer.name}.processor")
            if not (
                isinstance(proc, FaceCrafterAttnProcessor)
                and proc._controls["lmk"] is self.landmark
                and proc._controls["emo"] is self.emotion
            ):
                raise FacegenError(
                    f"the UNet's cross-attention processor at {layer.name} is not this pipeline's FaceCrafter "
                    "processor, so the landmark/emotion controls would be ignored; call pipe.install_controls()",
                    where="unet",
                )

    @property
    def resolution(self) -> int:
        return int(self.config.resolution)

    @property
    def landmark_image_size(self) -> int:
        return int(self.config.landmark_image_size)

    @property
    def default_guidance(self) -> GuidanceWeights:
        c = self.config
        return GuidanceWeights(id=c.guidance_id, lmk=c.guidance_lmk, emo=c.guidance_emo)

    @property
    def model_id(self) -> str:
        return str(self.config.model_name)

    @property
    def model_hash(self) -> str:
        """Hash of the folder this pipeline was loaded from ("unsaved" if it was built in memory)."""
        source = self.config.get("_name_or_path")
        return model_hash(source) if source and Path(source).is_dir() else "unsaved"

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.scheduler.config)

    # ---- folders --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, device: str | torch.device | None = None, **kwargs: Any
    ) -> "FaceCrafterPipeline":
        """Load a model folder (layout 2 via diffusers; layout-1 folders are read directly, nothing written).

        Extra keyword arguments go to `DiffusionPipeline.from_pretrained` (e.g. `dtype`, alias `torch_dtype`);
        `device` moves the loaded pipeline there.
        """
        path = Path(pretrained_model_name_or_path)
        if "torch_dtype" in kwargs:  # diffusers 0.42 calls it `dtype`
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        # one dtype for every part: without it, diffusers keeps each component in its stored dtype
        # (an fp16-shipped preset would mix fp16 and fp32 modules and fail on the first matmul)
        kwargs.setdefault("dtype", torch.float32)
        if not path.is_dir():
            raise FacegenError("model folder does not exist; create one with `facegen model init`", where=str(path))
        info = read_model_info(path)
        if folder_layout(path) == 1:
            from facegen.model.legacy import load_legacy_parts

            pipe = cls(**load_legacy_parts(path, info, kwargs.get("dtype")))
            pipe.register_to_config(_name_or_path=str(path))
        else:
            try:
                with quiet_transformers():
                    pipe = super().from_pretrained(str(path), **kwargs)
            except (OSError, ValueError, SafetensorError) as exc:
                raise FacegenError(f"cannot load the model: {str(exc).splitlines()[0]}", where=str(path)) from None
        if device is not None:
            pipe.to(device)
        return pipe

    def save_pretrained(self, save_directory: str | Path, safe_serialization: bool = True, **kwargs: Any) -> None:
        """diffusers' save (model_index.json + one folder per component) plus facegen's folder marker.

        The scheduler config is written without the values that were its class defaults, so
        `OtherScheduler.from_config(pipe.scheduler.config)` after a reload gets the same config as before it.
        """
        import json

        with quiet_transformers():
            super().save_pretrained(save_directory, safe_serialization=safe_serialization, **kwargs)
        root = Path(save_directory)
        defaults = set(self.scheduler.config.get("_use_default_values", []))
        config_path = root / "scheduler" / "scheduler_config.json"
        config = json.loads(config_path.read_text())
        config_path.write_text(json.dumps({k: v for k, v in config.items() if k not in defaults}, indent=2, sort_keys=True) + "\n")
        # where the pipeline and its components were loaded from is not part of the saved model
        for config_path in [root / MODEL_INDEX, *root.glob("*/config.json")]:
            config = json.loads(config_path.read_text())
            if config.pop("_name_or_path", None) is not None or config_path.name == MODEL_INDEX:
                config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.identity_encoder.save_uncond(root / "text_encoder")  # the frozen unconditional context, if any
        write_folder_marker(root)

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
        device, dtype = self._execution_device, self.unet.dtype
        _onload(self.text_encoder)  # the identity encoder calls its submodules, not its (hooked) forward
        batch = id_embeds.shape[0]
        lmk_cfg, emo_cfg = self.landmark.config, self.emotion.config
        out = {
            "id": self.identity_encoder(id_embeds.to(device, dtype)).to(device),
            "uncond": self.identity_encoder.encode_uncond(batch).to(device),
            "lmk": torch.zeros(batch, self.landmark.num_tokens, lmk_cfg.token_dim, device=device, dtype=dtype),
            "emo": torch.zeros(batch, emo_cfg.num_tokens, emo_cfg.token_dim, device=device, dtype=dtype),
        }
        if use_lmk.any():
            chosen = use_lmk.nonzero().flatten().to(device)
            out["lmk"][chosen] = self.landmark(landmark_images.to(device, dtype)[chosen]).to(dtype)
        if use_emo.any():
            chosen = use_emo.nonzero().flatten().to(device)
            out["emo"][chosen] = self.emotion(emotions.to(device, dtype)[chosen]).to(dtype)
        return out

    def unet_rows(
        self, latents: torch.Tensor, t: torch.Tensor, plan: BranchPlan, conditions: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """One batched UNet call over every (sample, branch) row of the plan."""
        samples = torch.tensor([s for s, _ in plan.rows], dtype=torch.long, device=latents.device)
        context = torch.stack([conditions["uncond" if b == "uncond" else "id"][s] for s, b in plan.rows])
        lmk_scale = torch.tensor(plan.scales("lmk"), device=latents.device)
        emo_scale = torch.tensor(plan.scales("emo"), device=latents.device)
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
        use_lmk: torch.Tensor | Sequence[bool] | None = None,
        use_emo: torch.Tensor | Sequence[bool] | None = None,
        num_inference_steps: int | None = None,
        guidance: GuidanceWeights | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        seeds: Sequence[int] | None = None,
        scheduler: str | None = None,
        progress: bool | None = None,
        guidance_intervals: GuidanceIntervals | dict[str, Any] | None = None,
    ) -> FaceCrafterPipelineOutput | tuple:
        """One image per row of `id_embeds` (B, 512), eq. 6 with per-sample branches.

        `landmark_images` (B, 3, S, S) float in [0, 1] and `emotions` (B, 10) condition the samples whose
        `use_lmk` / `use_emo` flag is set (default: all, when given). Defaults for steps, guidance and size
        come from the config. `generator`: one, or a list with one per sample; `seeds` is shorthand for a
        list of `torch.Generator("cpu").manual_seed(s)`. `scheduler`: a facegen sampler name (dpmpp, ddim,
        ddpm, dpmpp-sde) for this call only, built from `self.scheduler.config`; `progress` overrides the progress
        bar config for this call. `guidance_intervals` (a :class:`GuidanceIntervals` or a mapping like
        `{"unit": "fraction", "lmk": [0.0, 0.6]}`; None = every delta at every step, i.e. eq. 6): outside
        a branch's interval its delta is not computed and its rows leave the batched UNet call (see
        `facegen.model.guidance` for what eq. 6 reduces to).
        """
        batch = self._check_id_embeds(id_embeds)
        generator = self._generators(generator, seeds, batch)
        use_lmk = _flags(use_lmk, landmark_images, batch, "use_lmk")
        use_emo = _flags(use_emo, emotions, batch, "use_emo")
        self._check_controls_input(landmark_images, emotions, use_lmk, use_emo, batch)
        steps = int(num_inference_steps or self.config.num_inference_steps)
        guidance = guidance or self.default_guidance
        intervals = GuidanceIntervals.parse(guidance_intervals)
        height, width = int(height or self.resolution), int(width or self.resolution)
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise FacegenError(f"height/width must be multiples of {self.vae_scale_factor}", where="height/width")
        if output_type not in OUTPUT_TYPES:
            raise FacegenError(f"unknown output_type {output_type!r}; choose one of {', '.join(OUTPUT_TYPES)}", where="output_type")
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise FacegenError(f"can only pass {self._callback_tensor_inputs}; got {unknown}", where="callback_on_step_end_tensor_inputs")
        self.check_controls()

        sched = self.scheduler if scheduler is None else scheduler_from_name(scheduler, self.scheduler.config)
        device = self._execution_device
        sched.set_timesteps(steps, device=device)
        latents = self.prepare_latents(batch, height, width, generator, latents, device) * sched.init_noise_sigma
        conditions = self.encode_conditions(id_embeds, landmark_images, emotions, use_lmk, use_emo)
        branches = self._step_branches(intervals, sched)
        plans = {active: BranchPlan.for_samples(use_lmk.tolist(), use_emo.tolist(), active) for active in set(branches)}
        rows_used = [0] * batch
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}

        timesteps = sched.timesteps
        self._num_timesteps = len(timesteps)
        self._interrupt = False
        bar_config = dict(self._progress_bar_config) if hasattr(self, "_progress_bar_config") else None
        if progress is not None:
            self.set_progress_bar_config(**{**(bar_config or {}), "disable": not progress})
        try:
            # Latents, guidance and scheduler math stay float32; only the networks run in the model dtype.
            with self.progress_bar(total=len(timesteps)) as bar:
                for i, t in enumerate(timesteps):
                    if self._interrupt:
                        continue
                    model_input = sched.scale_model_input(latents, t).to(self.unet.dtype)
                    plan = plans[branches[i]]
                    rows_used = [a + b for a, b in zip(rows_used, plan.rows_per_sample(batch))]
                    eps_rows = self.unet_rows(model_input, t, plan, conditions).float()
                    eps = combine_guidance(eps_rows, plan, batch, guidance)
                    latents = sched.step(eps, t, latents, **step_kwargs).prev_sample
                    if callback_on_step_end is not None:
                        local = {"latents": latents}
                        outputs = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                        latents = outputs.pop("latents", latents)
                    bar.update()
        finally:
            if progress is not None:
                if bar_config is None:
                    del self._progress_bar_config
                else:
                    self._progress_bar_config = bar_config

        images = latents if output_type == "latent" else self.decode(latents, output_type)
        self.maybe_free_model_hooks()
        settings = self._settings(seeds, use_lmk, use_emo, guidance, sched, steps, height, width)
        for item, rows in zip(settings, rows_used):
            item["guidance_intervals"] = None if intervals is None else intervals.as_dict()
            item["unet_rows"] = rows
        if not return_dict:
            return images, settings
        return FaceCrafterPipelineOutput(images=images, settings=settings)

    def _step_branches(self, intervals: GuidanceIntervals | None, sched: SchedulerMixin) -> list[frozenset[str]]:
        """Per timestep of `sched` (set), the branches whose delta that step computes."""
        sigmas = step_sigmas(sched) if intervals is not None and intervals.needs_sigma else None
        return step_branches(intervals, len(sched.timesteps), sigmas)

    def unet_rows_per_image(
        self,
        guidance_intervals: GuidanceIntervals | dict[str, Any] | None = None,
        num_inference_steps: int | None = None,
        scheduler: str | None = None,
        use_lmk: bool = True,
        use_emo: bool = True,
    ) -> int:
        """UNet rows one image costs over a run (no UNet is called): full eq. 6 with both controls is
        4 x steps; all deltas off is 1 x steps."""
        return _rows_per_image(self.scheduler if scheduler is None else scheduler_from_name(scheduler, self.scheduler.config),
                               guidance_intervals, int(num_inference_steps or self.config.num_inference_steps), use_lmk, use_emo)

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def prepare_latents(
        self,
        batch: int,
        height: int,
        width: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor:
        """Initial noise (float32): given `latents`, else drawn from `generator` (a list: per sample, on
        each generator's device, so CPU generators give device-independent noise)."""
        shape = (batch, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise FacegenError(f"must have shape {shape}; got {tuple(latents.shape)}", where="latents")
            return latents.to(device, torch.float32)
        if isinstance(generator, list):
            one = (1, *shape[1:])
            noise = torch.cat([torch.randn(one, generator=g, device=g.device, dtype=torch.float32) for g in generator])
        else:
            rand_device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn(shape, generator=generator, device=rand_device, dtype=torch.float32)
        return noise.to(device)

    def decode(self, latents: torch.Tensor, output_type: str = "np") -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
        """Latents -> images of `output_type`. The VAE decoder is per-sample (GroupNorm, no batch stats)."""
        scaled = (latents / self.vae.config.scaling_factor).to(self.vae.dtype)
        images = self.vae.decode(scaled, return_dict=False)[0]
        return self.image_processor.postprocess(images.float(), output_type=output_type)

    # ---- checks -------------------------------------------------------------------------------

    @staticmethod
    def _check_id_embeds(id_embeds: torch.Tensor) -> int:
        if id_embeds.ndim != 2 or id_embeds.shape[1] != ID_EMBED_DIM:
            raise FacegenError(f"must have shape (B, {ID_EMBED_DIM}); got {tuple(id_embeds.shape)}", where="id_embeds")
        return int(id_embeds.shape[0])

    @staticmethod
    def _generators(
        generator: torch.Generator | list[torch.Generator] | None, seeds: Sequence[int] | None, batch: int
    ) -> torch.Generator | list[torch.Generator] | None:
        if seeds is not None:
            if generator is not None:
                raise FacegenError("give either seeds or generator, not both", where="seeds")
            seeds = [int(s) for s in seeds]
            if len(seeds) != batch:
                raise FacegenError(f"need one seed per sample ({batch}); got {len(seeds)}", where="seeds")
            return [torch.Generator("cpu").manual_seed(s) for s in seeds]
        if isinstance(generator, list) and len(generator) != batch:
            raise FacegenError(f"need one generator per sample ({batch}); got {len(generator)}", where="generator")
        return generator

    def _check_controls_input(
        self,
        landmark_images: torch.Tensor | None,
        emotions: torch.Tensor | None,
        use_lmk: torch.Tensor,
        use_emo: torch.Tensor,
        batch: int,
    ) -> None:
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

    def _settings(
        self,
        seeds: Sequence[int] | None,
        use_lmk: torch.Tensor,
        use_emo: torch.Tensor,
        guidance: GuidanceWeights,
        sched: SchedulerMixin,
        steps: int,
        height: int,
        width: int,
    ) -> list[dict[str, Any]]:
        common = {
            "guidance": asdict(guidance),
            "scheduler": scheduler_name(sched),
            "num_inference_steps": steps,
            "height": height,
            "width": width,
            "model_id": self.model_id,
            "model_hash": self.model_hash,
        }
        return [
            {"seed": None if seeds is None else int(seeds[i]), "use_lmk": bool(use_lmk[i]), "use_emo": bool(use_emo[i]), **common}
            for i in range(len(use_lmk))
        ]


def _rows_per_image(
    sched: SchedulerMixin,
    guidance_intervals: GuidanceIntervals | dict[str, Any] | None,
    steps: int,
    use_lmk: bool,
    use_emo: bool,
) -> int:
    intervals = GuidanceIntervals.parse(guidance_intervals)
    sched = type(sched).from_config(sched.config)  # set_timesteps mutates: never touch the caller's
    sched.set_timesteps(steps, device="cpu")
    sigmas = step_sigmas(sched) if intervals is not None and intervals.needs_sigma else None
    return planned_rows([use_lmk], [use_emo], intervals, len(sched.timesteps), sigmas)[0]


def rows_per_image(
    model_dir: str | Path,
    interval_settings: Sequence[GuidanceIntervals | dict[str, Any] | None],
    num_inference_steps: int = 25,
    scheduler: str = "dpmpp",
    controls: str = "id+lmk+emo",
) -> list[int]:
    """For a model folder, the UNet rows per image of each guidance-interval setting (None = eq. 6).

    Reads only the folder's scheduler config (sigma intervals depend on its noise schedule), so it is
    instant even for an SD1.5-size model. `controls`: the control set of the image (`id`, `id+lmk`,
    `id+emo`, `id+lmk+emo`). Divide by `num_inference_steps` for rows per step.
    """
    import json

    config_path = Path(model_dir) / "scheduler" / "scheduler_config.json"
    if not config_path.is_file():
        raise FacegenError("not a model folder (no scheduler/scheduler_config.json)", where=str(model_dir))
    sched = scheduler_from_name(scheduler, json.loads(config_path.read_text()))
    use_lmk, use_emo = "lmk" in controls, "emo" in controls
    return [_rows_per_image(sched, s, num_inference_steps, use_lmk, use_emo) for s in interval_settings]


def _onload(module: torch.nn.Module) -> None:
    """Run an accelerate offload hook's pre-forward for a module whose forward we bypass
    (what diffusers' `apply_forward_hook` does for `vae.decode`)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is not None:
        hook.pre_forward(module)


def _flags(flags: torch.Tensor | Sequence[bool] | None, values: torch.Tensor | None, batch: int, name: str) -> torch.Tensor:
    if flags is None:
        return torch.full((batch,), values is not None, dtype=torch.bool)
    flags = torch.as_tensor(flags).bool().cpu()
    if flags.shape != (batch,):
        raise FacegenError(f"must have shape ({batch},); got {tuple(flags.shape)}", where=name)
    return flags


# `DiffusionPipeline.from_pretrained(folder)` looks the class named in model_index.json up in the
# `diffusers` namespace; make it findable there once facegen's pipeline module is imported.
setattr(diffusers, FaceCrafterPipeline.__name__, FaceCrafterPipeline)
