"""`facegen generate` as a library call: a few images of one model, side by side in one grid.

    from facegen.runner.quicklook import generate_grid
    look = generate_grid("tiny-model/", landmarks="template", yaw=20, emotion="happy", num_images=2, out="grid.png")
    look.grid        # (H, W, 3) uint8: the landmark condition (when used), then one tile per image

Conditions are given the way a person types them (``"random"`` or a ``.npy`` identity, ``"template"``
posed by yaw/pitch/roll or a landmark PNG, an emotion class name or 10 numbers); user mistakes are
one-line :class:`~facegen.errors.FacegenError`\\ s naming the CLI option.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import FacegenError
from facegen.labels import EMOTION_NAMES, EMOTION_VECTOR_DIM, ID_EMBED_DIM


@dataclass
class QuickLook:
    """What :func:`generate_grid` made."""

    grid: np.ndarray  # uint8 (H, W, 3): [landmark condition,] image 0, image 1, ...
    images: np.ndarray  # uint8 (N, H, W, 3)
    settings: list[dict[str, Any]] = field(default_factory=list)  # per image: seed, scheduler, steps, guidance, ...
    path: str | None = None  # where the grid PNG was written


def generate_grid(
    model: str | Path,
    *,
    id_embedding: str = "random",
    landmarks: str | None = None,
    yaw: float = 0.0,
    pitch: float = 0.0,
    roll: float = 0.0,
    emotion: str | None = None,
    num_images: int = 4,
    seed: int = 0,
    steps: int | None = None,
    scheduler: str | None = None,
    guidance: Any = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> QuickLook:
    """Generate `num_images` images (seeds ``seed .. seed + n - 1``) of the model folder `model`.

    `id_embedding`: ``"random"`` (seeded) or a ``.npy`` with one (512,) or (N, 512) ArcFace embedding;
    `landmarks`: None (no landmark control), ``"template"`` (neutral mesh posed by `yaw`/`pitch`/`roll`)
    or a landmark PNG; `emotion`: None, a class name (``happy``) or ``"v,a,p_neutral,...,p_contempt"``.
    `steps`, `scheduler` and `guidance` (a ``GuidanceWeights``) default to the pipeline's. With `out` (a
    ``.png`` path or URL) the grid is also written there, atomically.
    """
    import torch

    from facegen.model.pipeline import SCHEDULERS, FaceCrafterPipeline, to_uint8

    if num_images < 1:
        raise FacegenError("must be >= 1", where="--num-images")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise FacegenError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}", where="--scheduler")
    if out is not None and not str(out).lower().endswith(".png"):
        raise FacegenError("the grid is written as PNG; give a .png path", where="--out")
    pipe = FaceCrafterPipeline.from_pretrained(model)
    n = num_images
    ids = torch.from_numpy(id_embeddings(id_embedding, n, seed))
    lmk = None if landmarks is None else landmark_image(landmarks, pipe.landmark_image_size, yaw, pitch, roll)
    emo = None if emotion is None else torch.from_numpy(emotion_vector(emotion))
    options: dict[str, Any] = {} if guidance is None else {"guidance": guidance}
    result = pipe(
        ids,
        landmark_images=None if lmk is None else lmk.expand(n, -1, -1, -1),
        emotions=None if emo is None else emo.expand(n, -1),
        seeds=[seed + i for i in range(n)],
        num_inference_steps=steps,
        scheduler=scheduler,  # type: ignore[arg-type]
        progress=progress,
        output_type="np",
        **options,
    )
    images = to_uint8(result.images)
    grid = np.concatenate(list(images), axis=1)
    if lmk is not None:
        cond = (lmk[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        grid = np.concatenate([_resize(cond, grid.shape[0]), grid], axis=1)
    look = QuickLook(grid=grid, images=images, settings=result.settings)
    if out is not None:
        look.path = write_png(grid, out)
    return look


def write_png(image: np.ndarray, out: str | Path) -> str:
    """Write `image` as PNG to a path or URL (atomically; parent folders created); returns where."""
    from PIL import Image

    from facegen.io.fs import split_url

    root, name = split_url(out)
    root.makedirs()
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    root.write_bytes_atomic(name, buffer.getvalue())
    return str(out)


def id_embeddings(spec: str, n: int, seed: int) -> np.ndarray:
    """(n, 512) L2-normalised float32: seeded Gaussian for ``"random"``, else read from a ``.npy`` file
    holding (512,) or (N, 512) (repeated or cut to n rows)."""
    if spec == "random":
        emb = np.random.default_rng(seed).standard_normal((n, ID_EMBED_DIM)).astype(np.float32)
    else:
        path = Path(spec)
        if not path.is_file():
            raise FacegenError("no such file (give a .npy embedding or 'random')", where=str(path))
        try:
            emb = np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise FacegenError(f"not a numeric .npy array ({exc})", where=str(path)) from None
        emb = emb.reshape(1, -1) if emb.ndim == 1 else emb
        if emb.ndim != 2 or emb.shape[1] != ID_EMBED_DIM:
            raise FacegenError(f"expected shape ({ID_EMBED_DIM},) or (N, {ID_EMBED_DIM}); got {emb.shape}", where=str(path))
        emb = np.resize(emb, (n, ID_EMBED_DIM)) if len(emb) != n else emb
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def landmark_image(spec: str, size: int, yaw: float, pitch: float, roll: float) -> Any:
    """(1, 3, size, size) float tensor in [0, 1]: the neutral template posed and rendered, or a PNG."""
    import torch

    if spec == "template":
        from facegen.conditions.render import posed_landmarks, render_landmark_images
        from facegen.conditions.template import neutral_template

        base = neutral_template()[None].astype(np.float32)
        posed = posed_landmarks(base, np.array([yaw]), np.array([pitch]), np.array([roll]))
        image = render_landmark_images(posed, size)[0]
    else:
        from PIL import Image

        path = Path(spec)
        if not path.is_file():
            raise FacegenError("no such file (give a landmark PNG or 'template')", where=str(path))
        image = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def emotion_vector(spec: str) -> np.ndarray:
    """(1, 10) float32 emotion condition: from 10 comma-separated numbers, or a class name's V/A prior
    and peaked class distribution."""
    from facegen.conditions.emotions import VA_PRIOR, class_index, peaked_probs

    if "," in spec:
        try:
            values = np.array([float(v) for v in spec.split(",")], dtype=np.float32)
        except ValueError:
            raise FacegenError("expected comma-separated numbers", where="--emotion") from None
        if values.shape != (EMOTION_VECTOR_DIM,):
            raise FacegenError(f"expected {EMOTION_VECTOR_DIM} numbers (v, a, 8 probabilities)", where="--emotion")
        return values[None]
    try:
        index = class_index(spec)
    except ValueError as exc:
        raise FacegenError(str(exc), where="--emotion") from None
    prior = VA_PRIOR[EMOTION_NAMES[index]]
    vector = np.concatenate([[prior.valence, prior.arousal], peaked_probs()[index]]).astype(np.float32)
    return vector[None]


def _resize(image: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((height, height), Image.BILINEAR))


__all__ = ["QuickLook", "emotion_vector", "generate_grid", "id_embeddings", "landmark_image", "write_png"]
