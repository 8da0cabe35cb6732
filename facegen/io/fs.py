"""One dataset root on any fsspec filesystem (a local path, ``file://``, ``s3://``, ``memory://``).

All shard I/O goes through :class:`Location`, so local runs and cloud runs share one code path.
Renames are atomic on local disks (``os.replace``); on object stores they are copy+delete, which is
why a shard's stats file is written last and is the only thing that marks a shard as done.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import fsspec

if TYPE_CHECKING:
    import pyarrow as pa


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

    def iter_names(self, rel: str = "") -> Iterator[str]:
        """Names under `rel` as the directory yields them (unsorted; nothing if it does not exist). On a
        local disk a stream (``os.scandir``): a folder of a million shards' files is never held as a list
        of full paths, as :meth:`list` does."""
        if not self.is_local:
            yield from self.list(rel)
            return
        try:
            with os.scandir(self.path(rel)) as entries:
                for entry in entries:
                    yield entry.name
        except (FileNotFoundError, NotADirectoryError):
            return

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

    @contextmanager
    def open_atomic(self, rel: str, mode: str = "wb") -> Iterator[IO[Any]]:
        """A file opened under a temporary sibling name and renamed over `rel` when the block ends
        without an exception (readers never see half a file); on an exception the temporary is removed
        and `rel` is left as it was. The one atomic writer of the package: every other helper below goes
        through it."""
        if mode not in ("wb", "w"):
            raise ValueError(f"open_atomic writes whole files: mode 'wb' or 'w', not {mode!r}")
        tmp = temporary_name(rel)
        try:
            with self.open(tmp, mode) as f:
                yield f
            self.rename(tmp, rel)
        except BaseException:
            self.remove(tmp)
            raise

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write to a temporary sibling, then rename into place: readers never see half a file."""
        with self.open_atomic(rel) as f:
            f.write(data)

    def write_text_atomic(self, rel: str, text: str) -> None:
        """:meth:`write_bytes_atomic` of UTF-8 text."""
        self.write_bytes_atomic(rel, text.encode("utf-8"))

    def write_parquet_atomic(self, rel: str, table: "pa.Table", **options: Any) -> None:
        """``pyarrow.parquet.write_table`` into `rel` through :meth:`open_atomic` (`options` go to pyarrow)."""
        import pyarrow.parquet as pq

        with self.open_atomic(rel) as f:
            pq.write_table(table, f, **options)


TEMP_MARK = ".tmp-"


def temporary_name(rel: str) -> str:
    """A unique temporary sibling of `rel` (recognisable by :data:`TEMP_MARK`)."""
    return f"{rel}{TEMP_MARK}{uuid.uuid4().hex[:12]}"


def split_url(target: str | os.PathLike[str]) -> tuple[Location, str]:
    """(the folder, the file name) of a file path or URL: ``split_url("s3://b/ds/x.parquet")`` ->
    ``(Location("s3://b/ds"), "x.parquet")``; how callers holding a single file path reach the atomic
    writers of :class:`Location`."""
    url = str(target)
    if "://" not in url:
        url = os.path.abspath(os.path.expanduser(url))
    parent, name = posixpath.split(url.rstrip("/"))
    if not name:
        raise ValueError(f"not a file path: {target!r}")
    return Location(parent or "/"), name


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write `data` to the file path or URL `target` (see :meth:`Location.open_atomic`)."""
    root, name = split_url(target)
    root.write_bytes_atomic(name, data)


def write_parquet_atomic(target: str | os.PathLike[str], table: "pa.Table", **options: Any) -> None:
    """Atomically write `table` as Parquet to the file path or URL `target`."""
    root, name = split_url(target)
    root.write_parquet_atomic(name, table, **options)


def normalize_url(target: str | os.PathLike[str]) -> str:
    """A dataset location as Ray actors and resumed runs need it: URLs (``s3://``, ``memory://``,
    ``file://``) unchanged, local paths absolute (``~`` expanded)."""
    url = str(target)
    if "://" in url:
        return url.rstrip("/") or url
    return os.path.abspath(os.path.expanduser(url))


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
