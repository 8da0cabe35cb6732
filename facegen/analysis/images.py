"""Decoding input images, with a reason for every file that cannot be used."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Extensions treated as images when listing folders and WebDataset samples.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")


class ImageRejected(Exception):
    """An input that yields no face record; `reason` is a short category, the message the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    @classmethod
    def parse(cls, text: str) -> tuple[str, str]:
        """Split a `SampleFailure.error` written from this exception back into (reason, detail)."""
        reason, sep, detail = text.partition(": ")
        return (reason, detail) if sep and " " not in reason else ("error", text)


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8 (H, W, 3) from encoded bytes (EXIF orientation applied); ImageRejected otherwise."""
    if not data:
        raise ImageRejected("empty", "the file has no bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # decodes fully: truncated files fail here, not later
                img = ImageOps.exif_transpose(img)
                rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise ImageRejected("not-an-image", "not a decodable image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too-large", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text or "broken data stream" in text else "unreadable"
        raise ImageRejected(reason, text) from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if min(arr.shape[:2]) < 16:
        raise ImageRejected("too-small", f"{arr.shape[1]}x{arr.shape[0]} pixels")
    return arr
