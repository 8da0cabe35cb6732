"""Identity embeddings for the plan: well-separated random unit vectors, or loaded from a file.

Random identities follow what synthetic face-recognition datasets do: draw isotropic Gaussian
vectors, L2-normalise, and keep a candidate only if its cosine similarity to every identity kept
so far is below `max_similarity`. Candidates are screened in vectorised blocks (one matrix product
against all accepted vectors), then greedily within the block; the result is deterministic for a
seed. In 512-d a random pair's cosine has std ~ 1/sqrt(512) = 0.044, so 0.3 is ~7 std out and
almost nothing is rejected; thresholds near 0.1 get expensive and are refused when hopeless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from facegen.errors import FacegenError
from facegen.labels import ID_EMBED_DIM, IMAGE_SUFFIXES

#: A validated `facegen.manifest.Manifest` (duck-typed: conditions sit below the manifest layer).
Manifest = Any
#: The plan's identity embeddings file, (N, 512) float32 (written by `manifest.write_plan`).
IDENTITIES_FILE = "identities.npy"

#: SeedSequence spawn key of the identity stream (other plan streams use other keys).
IDENTITY_STREAM = 1
#: Candidates are accepted only below max_similarity - margin, so float32 rounding of the stored
#: vectors can never push a pair over the threshold when it is re-checked.
_SAFETY_MARGIN = 1e-5
_BLOCK = 1024
_MAX_CANDIDATES_PER_ID = 200
_MAX_STALLED_BLOCKS = 8


def random_identities(count: int, max_similarity: float, seed: int) -> np.ndarray:
    """(count, 512) float32 unit vectors, every pair's cosine < max_similarity; deterministic."""
    if count < 1:
        raise ValueError("count must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(IDENTITY_STREAM,)))
    threshold = max_similarity - _SAFETY_MARGIN
    accepted = np.empty((count, ID_EMBED_DIM), dtype=np.float32)
    n = 0
    drawn = 0
    budget = _MAX_CANDIDATES_PER_ID * count + 10 * _BLOCK
    stalled = 0  # consecutive blocks that added nobody: the threshold is (nearly) unreachable
    while n < count:
        cand = rng.standard_normal((_BLOCK, ID_EMBED_DIM))
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        cand = cand.astype(np.float32).astype(np.float64)  # judge exactly what gets stored
        drawn += _BLOCK
        if n:
            worst = np.full(len(cand), -np.inf)
            for start in range(0, n, 8192):  # bounded memory for large counts
                sims = cand @ accepted[start : min(n, start + 8192)].astype(np.float64).T
                np.maximum(worst, sims.max(axis=1), out=worst)
            cand = cand[worst < threshold]
        keep = _greedy_within(cand, threshold)[: count - n]
        accepted[n : n + len(keep)] = cand[keep]
        n += len(keep)
        stalled = 0 if keep else stalled + 1
        if (drawn > budget or stalled >= _MAX_STALLED_BLOCKS) and n < count:
            raise FacegenError(
                f"identities.random: could not find {count} identities with every pair's cosine < {max_similarity:g} "
                f"(found {n} after {drawn} candidates); raise max_similarity or lower count"
            )
    return accepted


def _greedy_within(cand: np.ndarray, threshold: float) -> list[int]:
    """Indices of a greedy subset of `cand` whose pairwise cosines are all below threshold."""
    if len(cand) == 0:
        return []
    too_close = (cand @ cand.T) >= threshold
    np.fill_diagonal(too_close, False)
    keep: list[int] = []
    blocked = np.zeros(len(cand), dtype=bool)
    for i in range(len(cand)):
        if not blocked[i]:
            keep.append(i)
            blocked |= too_close[i]
    return keep


def max_pairwise_cosine(embeds: np.ndarray) -> float:
    """Largest cosine between two different rows (float64)."""
    e = np.asarray(embeds, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    gram = e @ e.T
    np.fill_diagonal(gram, -np.inf)
    return float(gram.max())


def load_embeddings(path: Path, column: str = "embedding", *, manifest: Manifest | None = None) -> tuple[np.ndarray, list[str]]:
    """L2-normalised float32 (N, 512) embeddings and N identity names from a .npy or Parquet file.

    .npy: an (N, 512) float array; names are "000000", "000001", ...
    Parquet: an `identity` column plus `column` (list of 512 floats). Several rows of one identity
    (e.g. `facegen extract` output) are averaged, then normalised; identities keep first-seen order.
    """
    path = Path(path)

    def fail(problem: str) -> FacegenError:
        if manifest is not None:
            return manifest.error(("identities", "embeddings"), problem)
        return FacegenError(problem, where=str(path))

    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise fail(f"cannot read {path.name} as .npy ({exc}); save it with numpy.save") from None
        if raw.ndim != 2 or raw.shape[1] != ID_EMBED_DIM or raw.shape[0] < 1 or raw.dtype.kind != "f":
            raise fail(f"{path.name} holds {raw.dtype} {raw.shape}; expected a float array of shape (N, {ID_EMBED_DIM})")
        embeds = raw.astype(np.float64)
        names = [f"{i:06d}" for i in range(len(embeds))]
    else:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise fail(f"cannot read {path.name} as Parquet ({exc}); give a valid Parquet file") from None
        missing = [c for c in ("identity", column) if c not in table.column_names]
        if missing:
            raise fail(
                f"{path.name} lacks column(s) {', '.join(missing)} (has {', '.join(table.column_names)}); "
                "add an `identity` column and the embedding column (or set identities.embedding_column)"
            )
        emb = table.column(column).combine_chunks()
        if not pa.types.is_list(emb.type) and not pa.types.is_fixed_size_list(emb.type) and not pa.types.is_large_list(emb.type):
            raise fail(f"column {column!r} is {emb.type}, not a list of floats; store one 512-float list per row")
        lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
        if len(lengths) == 0 or (lengths != ID_EMBED_DIM).any():
            raise fail(f"column {column!r} must hold exactly {ID_EMBED_DIM} floats per row (and at least one row); fix the embeddings")
        flat = pc.list_flatten(emb).to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, ID_EMBED_DIM)
        ids = table.column("identity").to_pylist()
        if any(i is None for i in ids):
            raise fail("the identity column has empty (null) entries; give every row an identity")
        names_arr = np.array([str(i) for i in ids])
        names_u, first, inverse = np.unique(names_arr, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # first-seen order
        sums = np.zeros((len(names_u), ID_EMBED_DIM))
        np.add.at(sums, inverse, flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12))
        embeds = sums[order]
        names = [str(n) for n in names_u[order]]
    if not np.isfinite(embeds).all():
        raise fail(f"{path.name} contains NaN or infinite values; recompute those embeddings")
    norms = np.linalg.norm(embeds, axis=1, keepdims=True)
    if (norms < 1e-8).any():
        raise fail(f"{path.name} has all-zero embedding rows (e.g. row {int(np.argmax(norms[:, 0] < 1e-8))}); drop them")
    return (embeds / norms).astype(np.float32), names


def resolve_identities(manifest: Manifest) -> tuple[np.ndarray, list[str]]:
    """The plan's identity table: (N, 512) float32 L2-normalised and N names."""
    ids = manifest.identities
    if ids.random is not None:
        embeds = random_identities(ids.random.count, ids.random.max_similarity, manifest.seed)
        return embeds, [f"random{i:06d}" for i in range(len(embeds))]
    if ids.embeddings is not None:
        return load_embeddings(ids.embeddings, ids.embedding_column, manifest=manifest)
    return embed_identity_folder(ids.folder, manifest)


def embed_identity_folder(folder: Path, manifest: Manifest | None = None) -> tuple[np.ndarray, list[str]]:
    """ArcFace embeddings of a folder of ID photos: one identity per subfolder (photos averaged) or,
    for photos directly in `folder`, one identity per photo. Needs the `mediapipe` landmark backend
    and ArcFace ONNX weights (`facegen weights check`)."""

    def fail(problem: str) -> FacegenError:
        if manifest is not None:
            return manifest.error(("identities", "folder"), problem)
        return FacegenError(problem, where=str(folder))

    try:
        from facegen.analysis import get_backend
        from facegen.analysis.id_photos import read_id_photo

        arcface = get_backend("arcface", kind="identity")  # first: missing weights fail fast
        finder = get_backend("mediapipe", kind="landmarks")
    except ImportError as exc:
        raise fail(f"embedding ID photos needs the analysis backends ({exc}); install facegen[analysis] or use `embeddings: file.npy`") from None
    except FacegenError as exc:
        raise fail(f"embedding ID photos needs ArcFace: {exc}") from None
    groups: dict[str, list[Path]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(folder)
        groups.setdefault(rel.parts[0] if len(rel.parts) > 1 else rel.stem, []).append(path)
    embeds, names = [], []
    for name, paths in groups.items():
        vectors = []
        for path in paths:
            image = read_id_photo(path)  # 16-bit / grayscale scaled, unreadable files named in one line
            face = finder.detect(image)
            vec = arcface.embed(image, face) if face is not None else None
            if vec is not None:
                vectors.append(vec)
        if not vectors:
            raise fail(f"no face found in the photo(s) of identity {name!r}; replace or remove them")
        mean = np.mean(vectors, axis=0)
        embeds.append(mean / np.linalg.norm(mean))
        names.append(name)
    return np.asarray(embeds, dtype=np.float32), names
