"""``facegen export imagefolder``: OUT/<identity>/<key>.jpg (torchvision ImageFolder, arcface_torch)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from PIL import Image

from facegen.io.fs import Location
from facegen.io.shards import ShardPaths, all_shard_stats

IMAGE_EXTS = ("jpg", "png", "webp")


def export_imagefolder(dataset: str, out: str | Path, quality: int = 95) -> int:
    """Write every sample's image as ``OUT/<identity>/<key>.jpg`` (non-JPEG images are re-encoded).

    Identity folders are zero-padded (``000012``) so ImageFolder's sorted class index equals the identity
    index. Returns the number of images written.
    """
    root = Location(dataset)
    out = Path(out)
    written = 0
    for shard in sorted(all_shard_stats(root)):
        pending: dict[str, dict[str, bytes]] = {}
        with root.open(ShardPaths(shard).tar, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if ext in (*IMAGE_EXTS, "json"):
                    pending.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
        for key, files in pending.items():
            image_ext = next((e for e in IMAGE_EXTS if e in files), None)
            if image_ext is None or "json" not in files:
                continue
            identity = int(json.loads(files["json"])["identity"])
            folder = out / f"{identity:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            data = files[image_ext]
            if image_ext != "jpg":
                buffer = io.BytesIO()
                Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=quality)
                data = buffer.getvalue()
            (folder / f"{key}.jpg").write_bytes(data)
            written += 1
    return written
