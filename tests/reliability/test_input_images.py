"""Issue 12 item 8 (+ the identity-folder case of item 5): input images decode correctly or fail in one line.

A 16-bit grayscale PNG decoded to pure 0/255 (Pillow's convert("RGB") clips "I;16" at 255) and was
then rejected as "no-face"; an identity folder holding a non-image raised UnidentifiedImageError.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.analysis.images import ImageRejected, decode_image
from facegen.cli.main import main
from facegen.errors import FacegenError


def _png16(gray: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG (colour type 0, bit depth 16) written byte by byte, independent of Pillow."""
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _gradient16() -> np.ndarray:
    return np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (32, 1))


def test_16_bit_grayscale_png_keeps_its_tones():
    gray = _gradient16()
    data = _png16(gray)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a wide-gray image
    rgb = decode_image(data)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    expected = np.round(gray.astype(np.float64) * 255 / 65535)
    assert np.abs(rgb[..., 0].astype(np.int16) - expected).max() <= 1
    assert len(np.unique(rgb)) > 60  # a gradient, not 0/255


def test_16_bit_png_written_by_pillow_and_mid_grey():
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20), 32768, np.uint16)).save(buf, format="PNG")
    assert decode_image(buf.getvalue())[0, 0].tolist() == [128, 128, 128]


def test_8_bit_gray_unchanged_and_float_gray_scaled():
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20), 77, np.uint8)).save(buf, format="PNG")
    assert decode_image(buf.getvalue())[0, 0].tolist() == [77, 77, 77]
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20), 0.5, np.float32)).save(buf, format="TIFF")
    assert decode_image(buf.getvalue())[0, 0].tolist() == [128, 128, 128]


def test_id_photo_16_bit_and_non_image(tmp_path: Path):
    from facegen.analysis.id_photos import read_id_photo

    (tmp_path / "grey16.png").write_bytes(_png16(_gradient16()))
    assert len(np.unique(read_id_photo(tmp_path / "grey16.png"))) > 60
    (tmp_path / "notes.jpg").write_text("not a photo")
    with pytest.raises(FacegenError) as info:
        read_id_photo(tmp_path / "notes.jpg")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "notes.jpg")) and "\n" not in message and ";" in message
    with pytest.raises(ImageRejected):
        decode_image(b"not a photo")


def test_identity_folder_with_a_non_image_is_one_line_naming_the_file(tmp_path: Path, capsys):
    ids = tmp_path / "ids"
    (ids / "alice").mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(ids / "alice" / "a.jpg")
    (ids / "bob.jpg").write_text("this is not a photo")
    (ids / "README.txt").write_text("other extensions are ignored")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\nmodel: tiny\nidentities:\n  folder: ids\nimages_per_identity: 2\n"
        "targets: {emotion: uniform}\n"
    )
    for argv in (["manifest", "validate", str(manifest)], ["plan", "--manifest", str(manifest), "--out", str(tmp_path / "out")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"error: {manifest}:4: identities.folder: "), err[0]
        assert str(ids / "bob.jpg") in err[0] and "not an image" in err[0] and ";" in err[0]
    assert not (tmp_path / "out" / "plan.parquet").exists()
