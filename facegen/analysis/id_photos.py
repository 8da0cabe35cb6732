"""ID photos -> identity embeddings (what a manifest's real identities become for `balance`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from facegen.analysis.images import ImageRejected, decode_image
from facegen.analysis.registry import get_backend
from facegen.errors import FacegenError
from facegen.labels import ID_EMBED_DIM


def read_id_photo(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) of one ID photo (16-bit grayscale scaled, not clipped); a file that cannot
    be read or decoded is a one-line FacegenError naming it."""
    try:
        return decode_image(Path(path).read_bytes())
    except OSError as exc:
        raise FacegenError(f"cannot read ID photo ({exc.strerror or exc}); check the file and its permissions", where=str(path)) from None
    except ImageRejected as rej:
        raise FacegenError(f"unusable ID photo ({rej}); remove it or replace it with a photo", where=str(path)) from None


def embed_id_photos(paths: Sequence[str | Path], *, models_dir: str | Path | None = None) -> np.ndarray:
    """(N, 512) float32 L2-normalised ArcFace embeddings, one per photo (its most prominent face).

    A photo that cannot be read or shows no face is a FacegenError naming the file.
    """
    mesh = get_backend("mediapipe", kind="landmarks")
    arcface = get_backend("arcface", kind="identity", models_dir=models_dir)
    out = np.zeros((len(paths), ID_EMBED_DIM), np.float32)
    try:
        for i, path in enumerate(paths):
            image = read_id_photo(path)
            face = mesh.detect(image)
            if face is None:
                raise FacegenError("no face found in ID photo; use a clear, frontal photo", where=str(path))
            out[i] = arcface.embed(image, face)  # type: ignore[assignment]
    finally:
        mesh.close()
        arcface.close()
    return out
