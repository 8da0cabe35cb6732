"""Training samples from extracted data (``DIR/labels.parquet`` + ``DIR/shards/*.tar``).

The sample stream is an endless concatenation of seeded per-epoch permutations of the target rows.
Global stream position ``g`` is consumed by worker ``g % world_size``; per micro-step every worker
takes ``items`` consecutive positions of its own, so the workers never see the same position and a
single integer — the *global cursor* (positions consumed by all workers) — is the data position a
checkpoint stores. Partners are drawn with an RNG keyed by (seed, global position), so a resumed run
sees exactly the pairs the interrupted run would have seen.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image

from facegen.errors import FacegenError
from facegen.io.fs import Location
from facegen.io.reader import ShardReader, shard_tars
from facegen.labels import EMOTION_VECTOR_DIM, ID_EMBED_DIM, NUM_EMOTIONS, NUM_LANDMARKS
from facegen.train.pairs import Labels, PairIndex  # noqa: F401  (Labels re-exported: defined with the pair rule)

_NEEDED = ("key", "identity", "embedding", "landmarks", "yaw", "pitch", "roll", "emotion", "valence", "arousal", "emotion_probs")


def _dense(table: pa.Table, column: str, width: int) -> np.ndarray:
    values = table[column].combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size != len(table) * width:
        raise FacegenError(f"labels.parquet: column {column!r} must hold {width} values per row")
    return flat.reshape(len(table), width)


def load_labels(data_dir: str | Path) -> Labels:
    """Read ``labels.parquet`` (EXTRACT_SCHEMA), sorted by key; one-line errors for missing columns."""
    path = Path(data_dir) / "labels.parquet"
    if not path.is_file():
        raise FacegenError(f"{path} not found; point 'data' at a `facegen extract` output folder")
    schema = pq.read_schema(path)
    missing = [c for c in _NEEDED if c not in schema.names]
    if missing:
        raise FacegenError(f"{path}: missing column(s) {', '.join(missing)}; expected facegen.labels.EXTRACT_SCHEMA")
    table = pq.read_table(path, columns=list(_NEEDED))
    if len(table) == 0:
        raise FacegenError(f"{path} has no rows; extract some faces first")
    table = table.take(pc.sort_indices(table, [("key", "ascending")]))
    scalars = [c for c in _NEEDED if c not in ("embedding", "landmarks", "emotion_probs")]
    frame = table.select(scalars).to_pandas()
    frame["key"] = frame["key"].astype(str)
    frame["identity"] = frame["identity"].astype(str)
    if frame["key"].duplicated().any():
        raise FacegenError(f"{path}: duplicate keys (e.g. {frame['key'][frame['key'].duplicated()].iloc[0]!r}); re-run extract")
    return Labels(
        frame=frame,
        embeddings=_dense(table, "embedding", ID_EMBED_DIM),
        landmarks=_dense(table, "landmarks", NUM_LANDMARKS * 3).reshape(-1, NUM_LANDMARKS, 3),
        emotion_probs=_dense(table, "emotion_probs", NUM_EMOTIONS),
    )


def check_labels_usable(data_dir: str | Path, stage: str) -> None:
    """Refuse extracts that cannot train `stage`: placeholder identities or missing emotion labels.

    `facegen extract --identity-backend none` writes all-zero embeddings and `--emotion-backend none`
    writes class -1 with NaN valence/arousal; training on those would silently learn nothing useful.
    """
    path = Path(data_dir) / "labels.parquet"
    table = pq.read_table(path, columns=["embedding", "emotion", "valence", "arousal"])
    emb = _dense(table, "embedding", ID_EMBED_DIM)
    blank = int((np.abs(emb).sum(axis=1) == 0).sum())
    if blank:
        raise FacegenError(
            f"{path}: {blank} of {len(emb)} rows have all-zero identity embeddings (extracted with "
            "--identity-backend none); re-run `facegen extract` with ArcFace weights"
        )
    from facegen.train.stages import stage_spec

    if stage_spec(stage).needs_emotion_labels:
        emotion = table.column("emotion").to_numpy(zero_copy_only=False)
        va = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in ("valence", "arousal")], 1)
        missing = int(((emotion < 0) | np.isnan(va).any(axis=1)).sum())
        if missing:
            raise FacegenError(
                f"{path}: {missing} of {len(emotion)} rows have no emotion label (extracted with "
                f"--emotion-backend none); stage {stage} needs EmoNet/HSEmotion labels: re-run `facegen extract`"
            )


class TarImages:
    """Random access to ``KEY.jpg`` members of ``DIR/shards/*.tar`` (DIR a folder or fsspec URL), through
    the shared shard reader (:class:`facegen.io.reader.ShardReader`: byte offsets from the tar headers)."""

    def __init__(self, data_dir: str | Path) -> None:
        root = Location(str(data_dir))
        self._readers: dict[str, ShardReader] = {}
        tars = shard_tars(root)
        if not tars:
            raise FacegenError(f"{Path(data_dir) / 'shards'} has no .tar shards; point 'data' at a `facegen extract` output")
        for rel in tars:
            reader = ShardReader(root, rel)
            for key, exts in reader.index().items():
                if "jpg" in exts:
                    self._readers[key] = reader

    def __contains__(self, key: str) -> bool:
        return key in self._readers

    def read(self, key: str) -> Image.Image:
        try:
            reader = self._readers[key]
        except KeyError:
            raise FacegenError(f"image {key}.jpg is listed in labels.parquet but not in any shard tar") from None
        return Image.open(io.BytesIO(reader.read(key, "jpg"))).convert("RGB")


@dataclass(frozen=True)
class DrawnItem:
    """One (target, partner) draw of the stream."""

    position: int  # global stream position
    target: int  # row in labels
    partner: int  # row in labels (its embedding is the ID condition)


class PairStream:
    """The deterministic, worker-sharded stream of (target, partner) pairs."""

    def __init__(self, num_rows: int, pairs: PairIndex, seed: int, world_rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= world_rank < world_size:
            raise ValueError("world_rank must be in [0, world_size)")
        self.num_rows, self.pairs, self.seed = num_rows, pairs, seed
        self.rank, self.world = world_rank, world_size
        self._perm_epoch, self._perm = -1, np.arange(num_rows)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.num_rows)
            self._perm_epoch = epoch
        return self._perm

    def draw(self, cursor: int, items: int) -> tuple[list[DrawnItem], int]:
        """This worker's `items` draws starting at global `cursor`; returns them and the next global cursor."""
        out = []
        for k in range(items):
            g = cursor + k * self.world + self.rank
            epoch, pos = divmod(g, self.num_rows)
            target = int(self._order(epoch)[pos])
            rng = np.random.default_rng([self.seed, g, 0xA11])
            out.append(DrawnItem(position=g, target=target, partner=self.pairs.choose(target, rng)))
        return out, cursor + items * self.world


@dataclass
class TrainBatch:
    """Tensors for one micro-batch (before replication), in the model contract's shapes."""

    images: torch.Tensor  # (B, 3, R, R) in [-1, 1]
    id_embeds: torch.Tensor  # (B, 512) L2-normalised, from the partner
    landmark_images: torch.Tensor  # (B, 3, S, S) in [0, 1], rendered from the target's landmarks
    emotions: torch.Tensor  # (B, 10): valence, arousal, 8 probs of the target
    face_masks: torch.Tensor  # (B, R, R) float {0, 1} from the target's landmarks
    positions: list[int]
    poses: torch.Tensor | None = None  # (B, 3) the target's yaw, pitch, roll in degrees (consistency reward)

    _TENSORS = ("images", "id_embeds", "landmark_images", "emotions", "face_masks", "poses")

    def _map(self, fn, positions: list[int]) -> TrainBatch:
        tensors = {k: None if getattr(self, k) is None else fn(getattr(self, k)) for k in self._TENSORS}
        return TrainBatch(**tensors, positions=positions)

    def to(self, device: torch.device | str) -> TrainBatch:
        return self._map(lambda t: t.to(device), self.positions)

    def repeat_interleave(self, n: int) -> TrainBatch:
        """Each item replicated `n` times in a row (intra-batch mixed conditioning)."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0), [p for p in self.positions for _ in range(n)])


def crop_size(images: TarImages, key: str) -> int:
    """The side of the data's (square) crops, read from one image."""
    width, height = images.read(key).size
    if width != height:
        raise FacegenError(f"image {key}.jpg is {width}x{height}; training needs the square crops of `facegen extract`")
    return width


def data_crop_size(data_dir: str | Path) -> int:
    """The crop size of an extract, from the first image of its first shard (cheap: one tar index)."""
    root = Location(str(data_dir))
    tars = shard_tars(root)
    if not tars:
        raise FacegenError(f"{Path(data_dir) / 'shards'} has no .tar shards; point 'data' at a `facegen extract` output")
    reader = ShardReader(root, tars[0])
    key = next((k for k, exts in reader.index().items() if "jpg" in exts), None)
    if key is None:
        raise FacegenError(f"shard {tars[0]} holds no .jpg images; re-run `facegen extract`")
    width, height = Image.open(io.BytesIO(reader.read(key, "jpg"))).size
    if width != height:
        raise FacegenError(f"image {key}.jpg is {width}x{height}; training needs the square crops of `facegen extract`")
    return width


def training_resolution(configured: int | None, model_resolution: int, crop: int) -> tuple[int, bool]:
    """(image size to train at, whether crops are resized to it) — never a silent resize.

    ``resolution: null`` trains at the model's resolution, which must then be the data's crop size;
    a configured ``resolution`` is taken as the explicit request to resize (bicubic) crops of another size.
    """
    if configured is not None:
        return configured, configured != crop
    if crop != model_resolution:
        raise FacegenError(
            f"the data's crops are {crop} px but the model generates {model_resolution} px; re-extract with "
            f"`--crop-size {model_resolution}`, or set `resolution: {model_resolution}` in the stage config to "
            f"upscale the crops explicitly (or `resolution: {crop}` to train at the crop size)"
        )
    return model_resolution, False


class SampleBuilder:
    """Turns drawn (target, partner) rows into a :class:`TrainBatch`.

    Target images must be `resolution` px square; other sizes are an error unless `resize` (an
    explicit `resolution` in the stage config, see :func:`training_resolution`) asks for a bicubic resize.
    """

    def __init__(
        self, labels: Labels, images: TarImages, resolution: int, landmark_image_size: int, *, resize: bool = False
    ) -> None:
        self.resolution, self.landmark_image_size, self.resize = resolution, landmark_image_size, resize
        self.keys = labels.frame["key"].tolist()
        self.embeddings = labels.embeddings
        self.landmarks = labels.landmarks
        self.emotions = np.concatenate(
            [labels.frame[["valence", "arousal"]].to_numpy(np.float32), labels.emotion_probs], axis=1
        ).reshape(-1, EMOTION_VECTOR_DIM)
        self.poses = labels.frame[["yaw", "pitch", "roll"]].to_numpy(np.float32)
        self.images = images
        missing = [k for k in self.keys if k not in images]
        if missing:
            raise FacegenError(f"{len(missing)} labelled key(s) have no image in the shards (e.g. {missing[0]!r}); re-run extract")

    def build(self, drawn: list[DrawnItem]) -> TrainBatch:
        from facegen.conditions.masks import face_mask
        from facegen.conditions.render import render_landmark_images

        targets = np.array([d.target for d in drawn])
        partners = np.array([d.partner for d in drawn])
        res = self.resolution
        pixels = [np.asarray(self.target_image(t), dtype=np.float32) / 127.5 - 1.0 for t in targets]
        lm = self.landmarks[targets]
        lmk_imgs = render_landmark_images(lm, self.landmark_image_size)
        masks = np.stack([face_mask(p, res) for p in lm]).astype(np.float32)
        emb = self.embeddings[partners]
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
        return TrainBatch(
            images=torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(),
            id_embeds=torch.from_numpy(emb),
            landmark_images=torch.from_numpy(np.asarray(lmk_imgs, dtype=np.float32) / 255.0).permute(0, 3, 1, 2).contiguous(),
            emotions=torch.from_numpy(self.emotions[targets].copy()),
            face_masks=torch.from_numpy(masks),
            positions=[d.position for d in drawn],
            poses=torch.from_numpy(self.poses[targets].copy()),
        )

    def target_image(self, row: int) -> Image.Image:
        img = self.images.read(self.keys[row])
        res = self.resolution
        if img.size == (res, res):
            return img
        if not self.resize:
            raise FacegenError(
                f"image {self.keys[row]}.jpg is {img.size[0]}x{img.size[1]} px but training runs at {res} px; "
                "set `resolution` in the stage config to resize crops explicitly, or re-extract at that size"
            )
        return img.resize((res, res), Image.BICUBIC)
