"""One dataset root on any fsspec filesystem (a local path, ``file://``, ``s3://``, ``memory://``).

All shard I/O goes through :class:`Location`, so local runs and cloud runs share one code path.
Renames are atomic on local disks (``os.replace``); on object stores they are copy+delete, which is
why a shard's stats file is written last and is the only thing that marks a shard as done.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import IO, Any

import fsspec


class Location:
    """A directory addressed by URL; every method takes paths relative to it (``/``-separated)."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.url = str(url).rstrip("/") or "/"
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root: str | None = None

    # Pickled into Ray actors by URL only; the filesystem object is rebuilt on first use.
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs, self._root = fsspec.core.url_to_fs(self.url)
        return self._fs

    @property
    def root(self) -> str:
        self.fs  # noqa: B018 - resolves _root
        assert self._root is not None
        return self._root

    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def path(self, rel: str = "") -> str:
        """Filesystem path (no protocol) of `rel` under the root."""
        return posixpath.join(self.root, rel) if rel else self.root

    def url_of(self, rel: str) -> str:
        """Full URL of `rel` (what stock readers such as ``webdataset.WebDataset`` accept)."""
        return self.fs.unstrip_protocol(self.path(rel)) if not self.is_local else self.path(rel)

    def child(self, rel: str) -> "Location":
        return Location(self.url + "/" + rel.strip("/"))

    def makedirs(self, rel: str = "") -> None:
        self.fs.makedirs(self.path(rel), exist_ok=True)

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def open(self, rel: str, mode: str = "rb") -> IO[Any]:
        return self.fs.open(self.path(rel), mode)

    def read_bytes(self, rel: str) -> bytes:
        with self.open(rel, "rb") as f:
            return f.read()

    def list(self, rel: str = "") -> list[str]:
        """Names (not paths) of the entries directly under `rel`; empty if it does not exist."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(str(e).rstrip("/")) for e in entries)

    def remove(self, rel: str) -> None:
        """Delete a file if present (missing is fine)."""
        try:
            self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass

    def remove_tree(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def rename(self, src: str, dst: str) -> None:
        """Move `src` over `dst` (atomic on local disks)."""
        if self.is_local:
            os.replace(self.path(src), self.path(dst))
        else:
            self.fs.mv(self.path(src), self.path(dst))

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write to a temporary sibling, then rename into place: readers never see half a file."""
        tmp = temporary_name(rel)
        try:
            with self.open(tmp, "wb") as f:
                f.write(data)
            self.rename(tmp, rel)
        except BaseException:
            self.remove(tmp)
            raise


TEMP_MARK = ".tmp-"


def temporary_name(rel: str) -> str:
    """A unique temporary sibling of `rel` (recognisable by :data:`TEMP_MARK`)."""
    return f"{rel}{TEMP_MARK}{uuid.uuid4().hex[:12]}"


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
