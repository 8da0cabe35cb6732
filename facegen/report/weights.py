"""Known weights and their licences, and which of them made (or measured) a dataset.

The dataset card lists every weight that touched a dataset with its licence, so a user can tell what the
images may be used for. Licences are what each project publishes for its *weights* (code licences can be
more permissive); the notes say where the training data restricts use further.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Weight:
    """One published set of weights: what it is and under which terms it may be used."""

    name: str
    role: str
    licence: str
    commercial: bool  # does the licence itself allow commercial use?
    note: str = ""


PROJECT_LICENCE = "Apache-2.0"

#: name -> Weight. Keys are the names datasets refer to (model presets, analysis backend names).
KNOWN_WEIGHTS: dict[str, Weight] = {
    w.name: w
    for w in (
        Weight("synthface", "generator + proxy estimators (facegen's own, trained on rendered faces)", PROJECT_LICENCE, True,
               "trained only on facegen's synthetic renders; no real faces"),
        Weight("tiny", "random-weight test generator (facegen)", PROJECT_LICENCE, True, "random weights: images are noise"),
        Weight("arc2face", "identity-conditioned UNet + CLIP ID encoder (Arc2Face)", "MIT (model card)", True,
               "fine-tuned from SD1.5 (its OpenRAIL-M use restrictions carry over); trained on WebFace42M, FFHQ, CelebA-HQ"),
        Weight("sd15", "VAE, tokenizer, scheduler (Stable Diffusion 1.5)", "CreativeML OpenRAIL-M", True,
               "use-based restrictions (attachment A of the licence) apply to outputs' use"),
        Weight("arcface", "identity embeddings (insightface ArcFace ONNX)", "non-commercial research only (insightface models)", False,
               "the insightface code is MIT; its pretrained models are not"),
        Weight("emonet", "emotion class, valence, arousal (EmoNet)", "CC BY-NC-ND 4.0", False),
        Weight("hsemotion", "emotion class (HSEmotion ONNX)", "Apache-2.0", True,
               "trained on AffectNet, whose own terms are research-only"),
        Weight("mediapipe", "478-point face mesh + head pose (MediaPipe Face Mesh)", "Apache-2.0", True),
        Weight("dlib", "5-point alignment + 128-d face embedding (dlib models)", "CC0-1.0 (face-recognition-models)", True,
               "dlib itself: Boost Software License"),
    )
}


def read_model_index(model_dir: str | None) -> dict[str, Any]:
    """The model folder's model_index.json (name, provenance), or {} when it cannot be read here."""
    if not model_dir:
        return {}
    try:
        data = json.loads((Path(model_dir) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def generator_weights(model_name: str | None, model_index: dict[str, Any]) -> list[str]:
    """Names of the weights inside the generation model, from its name and provenance."""
    provenance = model_index.get("provenance") or {}
    preset = provenance.get("preset") or model_index.get("model_name") or model_name
    if isinstance(provenance, dict) and ("arc2face" in provenance or "sd15" in provenance):
        return ["arc2face", "sd15"]
    if preset in ("synthface", "tiny"):
        return [str(preset)]
    return []


def estimator_names(lock_manifest: dict[str, Any] | None, verification: dict[str, Any] | None = None) -> dict[str, str]:
    """role -> backend name of every estimator that touched the dataset: identities embedded from photos,
    and the in-loop verifier's backends (summary.json's ``verification``, ``auto`` already resolved;
    else the manifest's ``verify:`` section)."""
    manifest = lock_manifest or {}
    used: dict[str, str] = {}
    identities = manifest.get("identities") or {}
    if isinstance(identities, dict) and identities.get("folder"):
        used["identity photos: landmarks"] = "mediapipe"
        used["identity photos: embedding"] = "arcface"
    if isinstance(verification, dict) and "mode" in verification:
        if verification["mode"] != "off":
            for attribute, name in (verification.get("estimators") or {}).items():
                if name and name not in ("none", "auto"):
                    used[f"verify: {attribute}"] = str(name)
        return used
    verify = manifest.get("verify")
    if isinstance(verify, dict) and str(verify.get("mode", "off")) not in ("off", "False", "false"):
        for key, value in _backend_entries(verify):
            used[f"verify: {key}"] = value
    return used


def _backend_entries(section: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(path, backend) for every value in a verify section that names a known weight."""
    out: list[tuple[str, str]] = []
    for key, value in section.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_backend_entries(value, f"{path}."))
        elif isinstance(value, str) and value.lower() in KNOWN_WEIGHTS:
            out.append((path, value.lower()))
    return out


def weights_used(model_name: str | None, model_index: dict[str, Any], estimators: dict[str, str]) -> list[Weight]:
    """Every known weight that made or measured the dataset, generator first, no repeats."""
    names = generator_weights(model_name, model_index) + list(estimators.values())
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return [KNOWN_WEIGHTS[n] for n in seen if n in KNOWN_WEIGHTS]


def dataset_licence(weights: list[Weight], model_known: bool) -> tuple[str, str | None]:
    """(HF licence id, licence name for ``license: other``): the project's licence when every weight that
    touched the data is facegen's own, else ``other`` (see the card's weights table)."""
    if model_known and weights and all(w.licence == PROJECT_LICENCE for w in weights):
        return PROJECT_LICENCE.lower(), None
    return "other", "facegen-generated-see-weights-table"


__all__ = [
    "KNOWN_WEIGHTS",
    "PROJECT_LICENCE",
    "Weight",
    "dataset_licence",
    "estimator_names",
    "generator_weights",
    "read_model_index",
    "weights_used",
]
