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


#: Single-channel modes with more than 8 bits per pixel. Pillow's convert("RGB") clips them at 255
#: instead of scaling (a 16-bit grayscale PNG became pure 0/255), so they are scaled here.
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_rgb(img: Image.Image) -> Image.Image | np.ndarray:
    """8-bit RGB: Pillow's conversion, except wide grayscale which is scaled to 0..255 first."""
    if img.mode not in _WIDE_GRAY_MODES:
        return img.convert("RGB")
    gray = np.asarray(img)
    if gray.dtype.kind == "f":
        gray = np.nan_to_num(gray.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(gray.max(initial=0.0))
        scale = 255.0 if top <= 1.0 else (1.0 if top <= 255.0 else 255.0 / 65535.0)
    elif img.mode.startswith("I;16") or int(gray.max(initial=0)) > 255:
        scale = 255.0 / 65535.0  # 16 significant bits (32-bit "I" holding 16-bit PNG samples too)
    else:
        scale = 1.0  # an "I" image whose values already fit 8 bits
    gray8 = np.clip(np.rint(gray.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return np.repeat(gray8[:, :, None], 3, axis=2)


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
                rgb = _to_rgb(img)
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
