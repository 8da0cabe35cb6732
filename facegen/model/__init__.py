"""FaceCrafter model core on diffusers: Arc2Face identity encoder, control modules, switched
cross-attention, the eq.-6 pipeline, model folders (load/save/presets).

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
    "FaceCrafterOutput": "facegen.model.pipeline",
    "GuidanceWeights": "facegen.model.pipeline",
    "FaceCrafterComponents": "facegen.model.loading",
    "load_components": "facegen.model.loading",
    "save_components": "facegen.model.loading",
    "read_model_info": "facegen.model.loading",
    "model_hash": "facegen.model.loading",
    "init_tiny_model": "facegen.model.presets",
    "assemble_arc2face_model": "facegen.model.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
