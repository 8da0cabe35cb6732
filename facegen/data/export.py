"""``facegen export imagefolder``: OUT/<identity>/<key>.jpg (torchvision ImageFolder, arcface_torch)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from facegen.io.fs import Location
from facegen.io.reader import IMAGE_EXTS, ShardReader, image_ext
from facegen.io.shards import all_shard_stats


def export_imagefolder(dataset: str, out: str | Path, quality: int = 95, accepted_only: bool = False) -> int:
    """Write every sample's image as ``OUT/<identity>/<key>.jpg`` (non-JPEG images are re-encoded).

    Identity folders are zero-padded (``000012``) so ImageFolder's sorted class index equals the identity
    index (``identity`` keeps its name in generated labels; only planned attributes became ``target_*``).
    `accepted_only`: skip samples the in-loop verification judged out of tolerance (kept in the dataset
    only in `verify: {mode: measure}`). Returns the number of images written.
    """
    root = Location(dataset)
    out = Path(out)
    written = 0
    for shard in sorted(all_shard_stats(root)):
        for key, files in ShardReader.of(root, shard).samples(exts=(*IMAGE_EXTS, "json")):
            ext = image_ext(files)
            if ext is None or "json" not in files:
                continue
            meta = json.loads(files["json"])
            if accepted_only and not meta.get("accepted", True):
                continue
            identity = int(meta["identity"])
            folder = out / f"{identity:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            data = files[ext]
            if ext != "jpg":
                buffer = io.BytesIO()
                Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=quality)
                data = buffer.getvalue()
            (folder / f"{key}.jpg").write_bytes(data)
            written += 1
    return written
