"""Listing `extract` inputs (an image folder or WebDataset shards) and reading their bytes."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pyarrow as pa

from facegen.analysis.images import IMAGE_EXTENSIONS
from facegen.errors import FacegenError

#: Separates a tar file from its member in a `source` string.
TAR_MEMBER_SEP = "::"

IDENTITY_FROM = ("folders", "files")


def _is_image(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in name else False


def _tar_files(root: Path) -> list[Path]:
    if root.is_file() and root.name.endswith(".tar"):
        return [root]
    return sorted(p for p in root.glob("*.tar") if p.is_file()) if root.is_dir() else []


def list_inputs(input_path: str | Path, identity_from: str = "folders") -> pa.Table:
    """One row per candidate image, sorted by source: `key` (NNNNNNNN), `source`, `identity`, `identity_index`.

    Folder input: every file below it (any extension: non-images are reported as rejects, not skipped
    silently, except hidden files). `identity_from="folders"` names the identity after the image's
    folder relative to the input (the input's own name for top-level files); `"files"` after the
    file stem. WebDataset input (a .tar or a folder of .tar files): one row per sample with an image
    member; identities from the sample key's folder part (`alice/0001` -> `alice`) or its last part.
    """
    root = Path(input_path).expanduser()
    if identity_from not in IDENTITY_FROM:
        raise FacegenError(f"--identity-from must be one of {', '.join(IDENTITY_FROM)}, got {identity_from!r}")
    if not root.exists():
        raise FacegenError("input not found; pass an image folder or WebDataset .tar shard(s)", where=str(root))
    tars = _tar_files(root)
    entries: list[tuple[str, str]] = []  # (source, identity)
    if tars:
        for tar_path in tars:
            entries.extend(_list_tar(tar_path, identity_from))
    elif root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(root)
            if identity_from == "files":
                identity = path.stem
            else:
                identity = "/".join(rel.parts[:-1]) or root.name
            entries.append((str(path), identity))
    else:
        raise FacegenError("input is neither a folder nor a .tar shard", where=str(root))
    if not entries:
        raise FacegenError("no input files found", where=str(root))
    entries.sort()
    names = sorted({identity for _, identity in entries})
    index = {name: i for i, name in enumerate(names)}
    return pa.table(
        {
            "key": pa.array([f"{i:08d}" for i in range(len(entries))], pa.string()),
            "source": pa.array([s for s, _ in entries], pa.string()),
            "identity": pa.array([i for _, i in entries], pa.string()),
            "identity_index": pa.array([index[i] for _, i in entries], pa.int32()),
        }
    )


def _list_tar(tar_path: Path, identity_from: str) -> list[tuple[str, str]]:
    try:
        with tarfile.open(tar_path, "r") as tar:
            members = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError) as exc:
        raise FacegenError(f"cannot read WebDataset shard: {exc}", where=str(tar_path)) from exc
    chosen: dict[str, str] = {}
    for name in members:
        folder, _, base = name.rpartition("/")
        stem, dot, _ext = base.partition(".")
        key = f"{folder}/{stem}" if folder else stem
        if dot and _is_image(base) and key not in chosen:
            chosen[key] = name
    out = []
    for key, member in chosen.items():
        folder, _, stem = key.rpartition("/")
        identity = stem if identity_from == "files" or not folder else folder
        out.append((f"{tar_path}{TAR_MEMBER_SEP}{member}", identity))
    return out


class SourceReader:
    """Reads `source` strings (file paths or `shard.tar::member`), keeping tar files open."""

    def __init__(self) -> None:
        self._tars: dict[str, tarfile.TarFile] = {}

    def read(self, source: str) -> bytes:
        if TAR_MEMBER_SEP in source:
            tar_path, member = source.split(TAR_MEMBER_SEP, 1)
            tar = self._tars.get(tar_path)
            if tar is None:
                tar = self._tars[tar_path] = tarfile.open(tar_path, "r")
            f = tar.extractfile(member)
            if f is None:
                raise OSError(f"{member} is not a file in {tar_path}")
            return f.read()
        return Path(source).read_bytes()

    def close(self) -> None:
        for tar in self._tars.values():
            tar.close()
        self._tars.clear()
