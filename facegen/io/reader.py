"""Reading facegen's own shard tars back (``shards/NNNNNN.tar``, written by :mod:`facegen.io.shards`).

The one reader behind the preview grid, ``export``, ``inspect``, ``verify`` and the training data: every
member is ``KEY.EXT`` (keys have no dots, so the first dot splits key from extension, as WebDataset
does). Streaming reads (:meth:`ShardReader.samples`, :meth:`ShardReader.scan`) go front to back once;
random access (:meth:`ShardReader.read`) seeks to a member's bytes through an offset index built from
the tar headers. Everything goes through :class:`~facegen.io.fs.Location`, so local folders and fsspec
URLs read alike. Stdlib ``tarfile`` only: no torch import (webdataset would pull it in).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from facegen.io.fs import Location
from facegen.io.shards import SHARDS_DIR, HashingStream, ShardPaths

#: Image extensions a sample may carry (the manifest's ``output.image_format``; extract writes jpg).
IMAGE_EXTS = ("jpg", "png", "webp")


def split_member(name: str) -> tuple[str, str]:
    """``"000042.lmk.png"`` -> ``("000042", "lmk.png")``: key before the first dot, extension after."""
    key, _, ext = name.partition(".")
    return key, ext


def image_ext(exts: Collection[str]) -> str | None:
    """The sample's image extension among `exts` (first of :data:`IMAGE_EXTS`), or None."""
    return next((e for e in IMAGE_EXTS if e in exts), None)


@dataclass
class ShardScan:
    """What one full pass over a tar found (see :meth:`ShardReader.scan`)."""

    keys: list[str] = field(default_factory=list)  # sample keys, first-seen (tar) order, each once
    exts: dict[str, set[str]] = field(default_factory=dict)  # key -> extensions present
    sha256: str = ""  # of the whole file, every byte
    bytes: int = 0


class ShardReader:
    """One shard tar under a dataset root.

    ``ShardReader(root, "shards/000003.tar")`` or ``ShardReader.of(root, 3)``. Use as a context manager
    to keep the file open across many :meth:`read` calls; without one, each read opens it briefly.
    Picklable (the Location travels by URL; an open file does not travel).
    """

    def __init__(self, root: Location, rel: str) -> None:
        self.root, self.rel = root, rel
        self._index: dict[str, dict[str, tuple[int, int]]] | None = None
        self._file: IO[bytes] | None = None

    @classmethod
    def of(cls, root: Location, shard: int) -> "ShardReader":
        return cls(root, ShardPaths(shard).tar)

    def __repr__(self) -> str:
        return f"ShardReader({self.root.url!r}, {self.rel!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "rel": self.rel, "_index": self._index, "_file": None}

    def __enter__(self) -> "ShardReader":
        if self._file is None:
            self._file = self.root.open(self.rel, "rb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- streaming -------------------------------------------------------------------------------
    def _stream(self, raw: Any, want: Callable[[str, str], bool]) -> Iterator[tuple[str, str, bytes | None]]:
        """(key, ext, data or None when not wanted) for every file member, in tar order."""
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member(member.name)
                data = None
                if want(key, ext):
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                yield key, ext, data

    def samples(
        self, keys: Collection[str] | None = None, exts: Collection[str] | None = None
    ) -> Iterator[tuple[str, dict[str, bytes]]]:
        """``(key, {ext: bytes})`` per sample in tar order (members of one sample are consecutive),
        restricted to `keys` and `exts` when given; a sample with no wanted member is not yielded."""
        key_set = None if keys is None else set(keys)
        ext_set = None if exts is None else set(exts)

        def want(key: str, ext: str) -> bool:
            return (key_set is None or key in key_set) and (ext_set is None or ext in ext_set)

        current: str | None = None
        files: dict[str, bytes] = {}
        with self.root.open(self.rel, "rb") as raw:
            for key, ext, data in self._stream(raw, want):
                if key != current:
                    if files:
                        yield current, files  # type: ignore[misc]
                    current, files = key, {}
                if data is not None:
                    files[ext] = data
        if files:
            yield current, files  # type: ignore[misc]

    def scan(self) -> ShardScan:
        """Read every byte once: the keys in tar order, their extensions, and the file's sha256 (what
        the shard's stats recorded at write time). Raises tarfile/OS errors on a damaged tar."""
        scan = ShardScan()
        with self.root.open(self.rel, "rb") as raw:
            reader = HashingStream(raw)
            for key, ext, _ in self._stream(reader, lambda k, e: True):
                if key not in scan.exts:
                    scan.exts[key] = set()
                    scan.keys.append(key)
                scan.exts[key].add(ext)
            while reader.read(1 << 20):  # the end-of-archive padding tarfile leaves unread
                pass
        scan.sha256, scan.bytes = reader.sha.hexdigest(), reader.bytes
        return scan

    def verified_samples(self, sha256: str, size: int, count: int) -> Iterator[tuple[str, dict[str, bytes]]]:
        """:meth:`samples` of every member, checked as they stream: the file must hash to `sha256` /
        `size` bytes (its stats) and hold `count` samples. Raises :class:`DamagedShard` at the first
        unreadable header or, at the end, on any difference -- a flipped byte or a header that makes
        tarfile stop early can never pass for a shorter shard."""
        seen = 0
        current: str | None = None
        files: dict[str, bytes] = {}
        try:
            with self.root.open(self.rel, "rb") as raw:
                reader = HashingStream(raw)
                for key, ext, data in self._stream(reader, lambda k, e: True):
                    if key != current:
                        if files:
                            seen += 1
                            yield current, files  # type: ignore[misc]
                        current, files = key, {}
                    files[ext] = data  # type: ignore[assignment]
                while reader.read(1 << 20):  # the end-of-archive padding tarfile leaves unread
                    pass
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise DamagedShard(self.rel, f"unreadable: {type(exc).__name__}: {exc}") from None
        if files:
            seen += 1
        problem = None
        if reader.bytes != size or reader.sha.hexdigest() != sha256:
            problem = "sha256 differs from its stats (changed after writing)"
        elif seen != count:
            problem = f"holds {seen} samples, its stats say {count}"
        if problem:
            raise DamagedShard(self.rel, problem)
        if files:
            yield current, files  # type: ignore[misc]

    # -- random access -----------------------------------------------------------------------------
    def index(self) -> dict[str, dict[str, tuple[int, int]]]:
        """key -> {ext: (data offset, size)} from the tar headers (data is skipped, not read)."""
        if self._index is None:
            index: dict[str, dict[str, tuple[int, int]]] = {}
            with self.root.open(self.rel, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
                for member in tar:
                    if member.isfile():
                        key, ext = split_member(member.name)
                        index.setdefault(key, {})[ext] = (member.offset_data, member.size)
            self._index = index
        return self._index

    def __contains__(self, key: str) -> bool:
        return key in self.index()

    def exts(self, key: str) -> dict[str, tuple[int, int]]:
        """The extensions of sample `key` (empty when absent)."""
        return self.index().get(key, {})

    def read(self, key: str, ext: str) -> bytes:
        """The bytes of member ``KEY.EXT``; KeyError when the tar has no such member."""
        offset, size = self.index()[key][ext]
        if self._file is not None:
            self._file.seek(offset)
            return self._file.read(size)
        with self.root.open(self.rel, "rb") as f:
            f.seek(offset)
            return f.read(size)


class DamagedShard(Exception):
    """A shard tar that does not match its stats (what :meth:`ShardReader.verified_samples` raises)."""

    def __init__(self, rel: str, problem: str) -> None:
        self.rel, self.problem = rel, problem
        super().__init__(f"{rel}: damaged shard ({problem})")

    def __reduce__(self) -> Any:  # crosses DataLoader worker processes
        return (DamagedShard, (self.rel, self.problem))


def shard_tars(root: Location) -> list[str]:
    """Relative paths of every ``shards/*.tar`` under `root` (finished or not; temporaries excluded), sorted."""
    return [f"{SHARDS_DIR}/{name}" for name in root.list(SHARDS_DIR) if name.endswith(".tar")]


__all__ = ["IMAGE_EXTS", "DamagedShard", "ShardReader", "ShardScan", "image_ext", "shard_tars", "split_member"]
