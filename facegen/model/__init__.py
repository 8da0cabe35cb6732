"""FaceCrafter model core on diffusers.

Parts (one job each):
  identity.py   `IdentityEncoder`: Arc2Face scheme, ArcFace (B, 512) -> CLIP context (B, 77, W)
  controls.py   `LandmarkControlModule` (CNN), `EmotionControlModule` (MLP); each owns its per-layer K/V
  attention.py  `FaceCrafterAttnProcessor` (eq. 1, per-sample a_LMK / a_EMO), `record_attention(unet)`
  guidance.py   eq. 6 over one batched UNet output: `GuidanceWeights`, `BranchPlan`, `combine_guidance`
  schedulers.py the one table of sampler names (dpmpp, ddim, ddpm, dpmpp-sde) -> diffusers schedulers
  pipeline.py   `FaceCrafterPipeline(DiffusionPipeline)` (batched eq. 6, per-sample generators)
  folder.py     model folder layouts, `ModelInfo`, `read_model_info`, `model_hash`
  legacy.py     layout-1 folders (`facegen.json` format 1) as pipeline arguments
  loading.py    `load_components` / `save_components` (training view), `convert_model_folder`
  presets.py    `init_tiny_model`, `assemble_arc2face_model`, SD1.5-size configs
  info.py       parameter counts (`facegen model info`) and the SD1.5-size budget

Typical use (importing facegen's pipeline module also lets `diffusers.DiffusionPipeline.from_pretrained`
load model folders)::

    pipe = FaceCrafterPipeline.from_pretrained(model_dir)            # or init_tiny_model(dir) first
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)   # any diffusers scheduler
    out = pipe(id_embeds, landmark_images, emotions, use_lmk, use_emo, seeds=[...], output_type="np")
    out.images  # float (B, H, W, 3) in [0, 1]; out.settings: per-sample resolved settings

Training: `comps = load_components(model_dir)`; trainable parts are `comps.landmark`, `comps.emotion`
(incl. their K/V) and `comps.identity_encoder.text_encoder`; pass tokens and per-sample scales through
`cross_attention_kwargs={"lmk_tokens", "emo_tokens", "lmk_scale", "emo_scale"}`; `save_components`.
Imports are lazy so `import facegen.model` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "IdentityEncoder": "facegen.model.identity",
    "LandmarkControlModule": "facegen.model.controls",
    "EmotionControlModule": "facegen.model.controls",
    "FaceCrafterAttnProcessor": "facegen.model.attention",
    "install_facecrafter_attention": "facegen.model.attention",
    "record_attention": "facegen.model.attention",
    "FaceCrafterPipeline": "facegen.model.pipeline",
    "FaceCrafterPipelineOutput": "facegen.model.pipeline",
    "FaceCrafterOutput": "facegen.model.pipeline",
    "GuidanceWeights": "facegen.model.guidance",
    "SCHEDULERS": "facegen.model.schedulers",
    "scheduler_from_name": "facegen.model.schedulers",
    "FaceCrafterComponents": "facegen.model.loading",
    "load_components": "facegen.model.loading",
    "save_components": "facegen.model.loading",
    "convert_model_folder": "facegen.model.loading",
    "read_model_info": "facegen.model.folder",
    "model_hash": "facegen.model.folder",
    "init_tiny_model": "facegen.model.presets",
    "assemble_arc2face_model": "facegen.model.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
