"""A webdataset pipeline over a facegen dataset's finished shards, yielding (image, target).

Shards are read through facegen's own reader (never by URL parsing: a path holding ``#`` or ``?`` works)
and checked against their stats as they stream (sha256, sample count). A damaged shard raises
:class:`DamagedShardError` naming it (default, ``on_damaged="raise"``) or, with ``on_damaged="skip"``,
is verified before it is read and skipped with a warning that counts the skipped shards; a loader never
yields silently fewer samples than the stats promise.

Labels: each sample's JSON carries the plan's values under ``target_*`` names (``target_emotion``,
``target_valence``, ``target_yaw``, ...: what the image was made for; `facegen.labels.TARGET_RENAMES`)
next to what the in-loop estimators measured (``measured_emotion``, ``measured_yaw``, ...,
``accepted``). ``target="emotion"`` / ``"va"`` yield the targets (datasets written before the rename:
the bare ``emotion`` / ``valence`` / ``arousal`` keys); ``"measured_emotion"`` / ``"measured_va"`` yield
the measurements (-1 / NaN when the dataset was not measured).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import torch
import webdataset as wds

from facegen.errors import FacegenError
from facegen.io.fs import Location
from facegen.io.reader import DamagedShard, ShardReader
from facegen.io.shards import ShardPaths, ShardStats, all_shard_stats, file_sha256

Target = Literal["identity", "emotion", "va", "measured_emotion", "measured_va", "labels"]
TARGETS: tuple[str, ...] = ("identity", "emotion", "va", "measured_emotion", "measured_va", "labels")
IMAGE_KEYS = "jpg;png;webp"
OnDamaged = Literal["raise", "skip"]


class DamagedShardError(FacegenError):
    """A shard whose bytes differ from its stats; the message names the shard and what to do."""


class DamagedShardWarning(UserWarning):
    """A damaged shard was skipped (``on_damaged="skip"``); the message counts the skipped shards."""


def shard_urls(dataset: str) -> list[str]:
    """URLs of the finished shards (those with a stats file), in shard order."""
    root = Location(dataset)
    shards = sorted(all_shard_stats(root))
    if not shards:
        raise FacegenError("holds no finished shards (no shards/NNNNNN_stats.json); run `facegen balance` first", where=dataset)
    return [root.url_of(ShardPaths(s).tar) for s in shards]


def _entries(dataset: str) -> list[dict[str, Any]]:
    root = Location(dataset)
    stats = all_shard_stats(root)
    if not stats:
        raise FacegenError("holds no finished shards (no shards/NNNNNN_stats.json); run `facegen balance` first", where=dataset)
    return [{"url": root.url_of(ShardPaths(s).tar), "root": root.url, "shard": s, "stats": stats[s]} for s in sorted(stats)]


class _ShardList(torch.utils.data.IterableDataset):
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__()
        self.entries = entries

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for entry in self.entries:
            yield dict(entry)


class _VerifiedTarSamples:
    """Pipeline stage: shard entries -> WebDataset sample dicts, each shard checked against its stats."""

    def __init__(self, on_damaged: str) -> None:
        if on_damaged not in ("raise", "skip"):
            raise FacegenError(f"unknown value {on_damaged!r}; use 'raise' or 'skip'", where="on_damaged")
        self.on_damaged = on_damaged
        self.skipped: list[str] = []

    def _damaged(self, entry: dict[str, Any], problem: str) -> None:
        where = f"{entry['url']} (shard {entry['shard']:06d})"
        if self.on_damaged == "raise":
            raise DamagedShardError(
                f"damaged shard: {problem}; re-run `facegen balance` with the same manifest and --out to redo it, "
                "or load with on_damaged='skip'",
                where=where,
            )
        self.skipped.append(entry["url"])
        warnings.warn(
            f"{where}: damaged shard skipped ({problem}); {len(self.skipped)} shard(s) skipped so far",
            DamagedShardWarning,
            stacklevel=2,
        )

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for entry in src:
            stats: ShardStats = entry["stats"]
            root = Location(entry["root"])
            reader = ShardReader.of(root, entry["shard"])
            if self.on_damaged == "skip":
                try:
                    sha, size = file_sha256(root, reader.rel)
                    problem = None if (sha, size) == (stats.tar_sha256, stats.tar_bytes) else "sha256 differs from its stats"
                except OSError as exc:
                    problem = f"unreadable: {exc}"
                if problem:
                    self._damaged(entry, problem)
                    continue
            try:
                for key, files in reader.verified_samples(stats.tar_sha256, stats.tar_bytes, stats.count):
                    yield {"__key__": key, "__url__": entry["url"], **files}
            except DamagedShard as exc:
                self._damaged(entry, exc.problem)


class _Pipeline(wds.DataPipeline, wds.FluidInterface):
    pass


def _planned(meta: dict[str, Any], name: str) -> Any:
    """A target value: ``target_<name>``, or the bare name in datasets written before the rename."""
    return meta[f"target_{name}"] if f"target_{name}" in meta else meta[name]


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)  # JSON null = not measured


def _to_target(target: str) -> Any:
    if target == "identity":
        return lambda meta: int(meta["identity"])
    if target == "emotion":
        return lambda meta: int(_planned(meta, "emotion"))
    if target == "va":
        return lambda meta: torch.tensor([_planned(meta, "valence"), _planned(meta, "arousal")], dtype=torch.float32)
    if target == "measured_emotion":
        return lambda meta: int(meta.get("measured_emotion", -1))
    if target == "measured_va":
        return lambda meta: torch.tensor([_nan(meta.get("measured_valence")), _nan(meta.get("measured_arousal"))], dtype=torch.float32)
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
    on_damaged: OnDamaged | str = "raise",
) -> wds.DataPipeline:
    """(image float tensor (3,H,W) in [0,1], target) pairs from `dataset` (a local dir or fsspec URL).

    Shards are split across DataLoader workers (``wds.split_by_worker``) and, with `split_by_node`,
    across torch.distributed ranks, so every sample is seen once per epoch. `shuffle` > 0 shuffles
    shards and samples (buffer of that size) deterministically from `seed`. A shard that differs from
    its stats raises :class:`DamagedShardError` naming it, or with ``on_damaged="skip"`` is skipped with
    a :class:`DamagedShardWarning` counting the skipped shards.
    """
    to_target = _to_target(target)
    stages: list[Any] = [_ShardList(_entries(dataset))]
    if shuffle:
        stages.append(wds.detshuffle(100, seed=seed))
    stages += [
        wds.split_by_node if split_by_node else wds.single_node_only,
        wds.split_by_worker,
        _VerifiedTarSamples(on_damaged),
    ]
    ds = _Pipeline(*stages)
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
    on_damaged: OnDamaged | str = "raise",
) -> torch.utils.data.DataLoader:
    """A torch DataLoader over :func:`make_dataset`: (images (B,3,H,W), targets) batches; ``labels`` targets
    arrive as a list of dicts, the others as tensors. `on_damaged` as in :func:`make_dataset`."""
    ds = make_dataset(dataset, target, shuffle=shuffle, seed=seed, image_size=image_size, on_damaged=on_damaged).batched(
        batch_size, partial=True
    )
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers)
