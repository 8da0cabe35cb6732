"""A webdataset pipeline over a facegen dataset's finished shards, yielding (image, target)."""

from __future__ import annotations

import random
from typing import Any, Literal

import torch
import webdataset as wds

from facegen.errors import FacegenError
from facegen.io.fs import Location
from facegen.io.shards import ShardPaths, all_shard_stats

Target = Literal["identity", "emotion", "va", "labels"]
TARGETS: tuple[str, ...] = ("identity", "emotion", "va", "labels")
IMAGE_KEYS = "jpg;png;webp"


def shard_urls(dataset: str) -> list[str]:
    """URLs of the finished shards (those with a stats file), in shard order."""
    root = Location(dataset)
    shards = sorted(all_shard_stats(root))
    if not shards:
        raise FacegenError("holds no finished shards (no shards/NNNNNN_stats.json); run `facegen balance` first", where=dataset)
    return [root.url_of(ShardPaths(s).tar) for s in shards]


def _to_target(target: str) -> Any:
    if target == "identity":
        return lambda meta: int(meta["identity"])
    if target == "emotion":
        return lambda meta: int(meta["emotion"])
    if target == "va":
        return lambda meta: torch.tensor([meta["valence"], meta["arousal"]], dtype=torch.float32)
    if target == "labels":
        return lambda meta: meta
    raise FacegenError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}", where="target")


def make_dataset(
    dataset: str,
    target: Target | str = "identity",
    *,
    shuffle: int = 0,
    seed: int = 0,
    image_size: int | None = None,
    split_by_node: bool = True,
) -> wds.WebDataset:
    """(image float tensor (3,H,W) in [0,1], target) pairs from `dataset` (a local dir or fsspec URL).

    Shards are split across DataLoader workers (``wds.split_by_worker``) and, with `split_by_node`,
    across torch.distributed ranks, so every sample is seen once per epoch. `shuffle` > 0 shuffles
    shards and samples (buffer of that size) deterministically from `seed`.
    """
    to_target = _to_target(target)
    ds = wds.WebDataset(
        shard_urls(dataset),
        shardshuffle=100 if shuffle else False,
        detshuffle=bool(shuffle),
        seed=seed,
        nodesplitter=wds.split_by_node if split_by_node else wds.single_node_only,
        workersplitter=wds.split_by_worker,
        empty_check=False,
    )
    if shuffle:
        ds = ds.shuffle(shuffle, rng=random.Random(seed))
    ds = ds.decode("torchrgb").to_tuple(IMAGE_KEYS, "json")

    def convert(sample: tuple[torch.Tensor, dict[str, Any]]) -> tuple[torch.Tensor, Any]:
        image, meta = sample
        if image_size is not None and image.shape[-1] != image_size:
            image = torch.nn.functional.interpolate(image[None], size=(image_size, image_size), mode="bilinear", antialias=True)[0]
        return image, to_target(meta)

    return ds.map(convert)


def make_loader(
    dataset: str,
    batch_size: int,
    *,
    num_workers: int = 0,
    target: Target | str = "identity",
    shuffle: int = 0,
    seed: int = 0,
    image_size: int | None = None,
) -> torch.utils.data.DataLoader:
    """A torch DataLoader over :func:`make_dataset`: (images (B,3,H,W), targets) batches; ``labels`` targets
    arrive as a list of dicts, the others as tensors."""
    ds = make_dataset(dataset, target, shuffle=shuffle, seed=seed, image_size=image_size).batched(
        batch_size, partial=True
    )
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers)
