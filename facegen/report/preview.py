"""``preview.jpg``: one row of samples per (target) emotion class, read back from the shard tars; accepted
samples only when the dataset records acceptance."""

from __future__ import annotations

import io
from collections import defaultdict

import pyarrow as pa
from PIL import Image, ImageDraw

from facegen.io.fs import Location
from facegen.io.reader import IMAGE_EXTS, ShardReader, image_ext
from facegen.labels import EMOTION_NAMES
from facegen.report.columns import accepted_mask, target_values

PREVIEW_NAME = "preview.jpg"


def _read_images(root: Location, shard: int, keys: set[str]) -> dict[str, Image.Image]:
    found: dict[str, Image.Image] = {}
    for key, files in ShardReader.of(root, shard).samples(keys=keys, exts=IMAGE_EXTS):
        found[key] = Image.open(io.BytesIO(files[image_ext(files)])).convert("RGB")  # type: ignore[index]
    return found


def render_preview(root: Location, labels: pa.Table, per_class: int = 8, tile: int = 96) -> bytes:
    """JPEG bytes of a grid: a labelled row per target emotion class present, up to `per_class` (accepted)
    samples each."""
    chosen: dict[int, list[tuple[str, int]]] = defaultdict(list)
    emotions = target_values(labels, "emotion")
    if labels.num_rows and emotions is not None:
        rows = zip(labels.column("key").to_pylist(), labels.column("shard").to_pylist(), emotions, accepted_mask(labels))
        for key, shard, emotion, accepted in rows:
            if accepted and len(chosen[emotion]) < per_class:
                chosen[emotion].append((key, shard))
    by_shard: dict[int, set[str]] = defaultdict(set)
    for items in chosen.values():
        for key, shard in items:
            by_shard[shard].add(key)
    images: dict[str, Image.Image] = {}
    for shard, keys in sorted(by_shard.items()):
        images.update(_read_images(root, shard, keys))

    classes = sorted(chosen)
    label_w = 90
    columns = max((len(items) for items in chosen.values()), default=1)  # no empty columns on small runs
    grid = Image.new("RGB", (label_w + columns * tile, max(1, len(classes)) * tile), "white")
    draw = ImageDraw.Draw(grid)
    for r, emotion in enumerate(classes):
        draw.text((4, r * tile + tile // 2 - 6), EMOTION_NAMES[emotion], fill="black")
        for c, (key, _) in enumerate(chosen[emotion]):
            if key in images:
                grid.paste(images[key].resize((tile, tile), Image.Resampling.BILINEAR), (label_w + c * tile, r * tile))
    if not classes:
        draw.text((4, 4), "no samples", fill="black")
    buffer = io.BytesIO()
    grid.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_preview(root: Location, labels: pa.Table, per_class: int = 8) -> None:
    root.write_bytes_atomic(PREVIEW_NAME, render_preview(root, labels, per_class))


__all__ = ["render_preview", "write_preview"]
