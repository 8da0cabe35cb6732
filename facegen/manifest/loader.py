"""`load_manifest`: YAML -> validated `Manifest`, or one `FacegenError` line naming file:line and field."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from facegen.errors import FacegenError
from facegen.manifest.limits import max_identities, max_images
from facegen.manifest.schema import Manifest, identity_groups
from facegen.manifest.yaml_lines import LineMap, check_size, line_for, load_yaml_with_lines

# What to do, per pydantic error type, when the message alone does not say it.
_ADVICE = {
    "missing": "add it",
    "literal_error": "use one of the listed values",
    "int_type": "write a whole number",
    "float_type": "write a number",
    "finite_number": "write a finite number (not .nan or .inf)",
    "bool_type": "write true or false",
    "string_type": "write a string",
    "list_type": "write a list like [a, b]",
    "dict_type": "write a mapping (key: value lines)",
    "model_type": "write a mapping (key: value lines)",
    "model_attributes_type": "write a mapping (key: value lines)",
    "too_short": "give the required number of entries",
    "too_long": "give the required number of entries",
}


def load_manifest(path: str | Path) -> Manifest:
    """Read, validate and cross-check a manifest; relative paths resolve against its folder."""
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise FacegenError("manifest file not found; check the path", where=source)
    try:
        check_size(file.stat().st_size, source)  # before reading: a 50 MB "manifest" costs nothing
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FacegenError(f"not UTF-8 text (byte {exc.start}); save the manifest as UTF-8", where=source) from None
    except OSError as exc:
        raise FacegenError(f"cannot read the manifest ({exc.strerror or exc}); check the path and its permissions", where=source) from None
    data, lines = load_yaml_with_lines(text, source)
    return validate_manifest(data, source=source, lines=lines, base_dir=file.resolve().parent)


def validate_manifest(data: Any, *, source: str, lines: LineMap, base_dir: Path) -> Manifest:
    """Validate already-parsed manifest data (used by `load_manifest` and tests)."""
    if not isinstance(data, dict):
        raise FacegenError("the manifest must be a YAML mapping (key: value lines); see manifests/demo.yaml", where=f"{source}:1")
    if "version" in data and data["version"] != 1:
        line = lines.get(("version",))
        raise FacegenError(
            f"version: unsupported manifest version {data['version']!r}; this facegen reads version 1",
            where=f"{source}:{line}" if line else source,
        )
    try:
        manifest = Manifest.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise _one_line(exc, source, lines) from None
    manifest._source = source
    manifest._lines = lines
    _cross_check(manifest)
    return manifest


def _cross_check(manifest: Manifest) -> None:
    if manifest.balance is None and manifest.images_per_identity is None:
        raise manifest.error(("images_per_identity",), "required (images per identity); add it, or add a `balance:` section with a total")
    if manifest.balance is not None and manifest.images_per_identity is not None:
        raise manifest.error(
            ("images_per_identity",),
            "with `balance:` the image count is balance.total; remove images_per_identity",
        )
    _check_caps(manifest)  # before any file of the manifest is loaded or anything is sized by it
    if manifest.balance is not None:
        from facegen.manifest.topup import read_source_counts

        read_source_counts(manifest)  # validates the column and its labels
    if manifest.identities.embeddings is not None:
        from facegen.conditions.identities import load_embeddings

        load_embeddings(manifest.identities.embeddings, manifest.identities.embedding_column, manifest=manifest)


def count_identities(manifest: Manifest, cap: int) -> tuple[int | None, tuple[str, ...]]:
    """How many identities the manifest's source holds, without loading it, and the field naming the
    source. None: unreadable (the loader then reports why). A Parquet source is counted only up to
    `cap` + 1 distinct names (bounded memory), so a count above `cap` may be a lower bound."""
    ids = manifest.identities
    if ids.random is not None:
        return ids.random.count, ("identities", "random", "count")
    if ids.folder is not None:
        return len(identity_groups(ids.folder)), ("identities", "folder")
    assert ids.embeddings is not None
    field = ("identities", "embeddings")
    try:
        if ids.embeddings.suffix.lower() == ".npy":
            import numpy as np

            shape = np.load(ids.embeddings, mmap_mode="r", allow_pickle=False).shape  # header only
            return (int(shape[0]) if len(shape) >= 1 else None), field
        import pyarrow.parquet as pq

        source = pq.ParquetFile(ids.embeddings)
        if source.metadata.num_rows <= cap:
            return source.metadata.num_rows, field  # rows of one identity are averaged: identities <= rows
        names: set = set()
        for batch in source.iter_batches(columns=["identity"], batch_size=1 << 16):
            names.update(batch.column(0).to_pylist())
            if len(names) > cap:
                break
        return len(names), field
    except Exception:  # noqa: BLE001 - unreadable/malformed: load_embeddings names the problem
        return None, field


def _check_caps(manifest: Manifest) -> None:
    """Identity and image caps (facegen/manifest/limits.py), each a one-line error with its remedy."""
    id_cap, id_raise = max_identities(manifest.limits.max_identities)
    num_ids, id_field = count_identities(manifest, id_cap)
    if num_ids is not None and num_ids > id_cap:
        embeddings = manifest.identities.embeddings
        counted = f"more than {id_cap:,}" if embeddings is not None and embeddings.suffix.lower() == ".parquet" else f"{num_ids:,}"
        raise manifest.error(
            id_field,
            f"{counted} identities, above the limit of {id_cap:,}; use fewer, or raise the cap with {id_raise}",
        )
    img_cap, img_raise = max_images(manifest.limits.max_images)
    if manifest.balance is not None:
        if manifest.balance.total > img_cap:
            raise manifest.error(
                ("balance", "total"),
                f"{manifest.balance.total:,} images, above the limit of {img_cap:,}; lower it, or raise the cap with {img_raise}",
            )
        return
    per_id = manifest.images_per_identity
    assert per_id is not None
    if num_ids is not None and num_ids * per_id > img_cap or per_id > img_cap:
        total = f"{num_ids:,} identities x {per_id:,} = {num_ids * per_id:,} images" if num_ids is not None else f"{per_id:,} images per identity"
        raise manifest.error(
            ("images_per_identity",),
            f"{total}, above the limit of {img_cap:,}; lower it, or raise the cap with {img_raise}",
        )


def _one_line(exc: ValidationError, source: str, lines: LineMap) -> FacegenError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and "[" in part))
    line, _ = line_for(lines, loc)
    dotted = ".".join(map(str, loc)) or "(top level)"
    kind = first["type"]
    if kind == "value_error":
        problem = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        problem = "unknown key; remove it or fix its spelling" + (f" (allowed here: {', '.join(allowed)})" if allowed else "")
    elif kind == "missing":
        problem = "required; add it"
    else:
        got = first.get("input")
        shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        problem = f"{first['msg'][:1].lower()}{first['msg'][1:]}{shown}; {_ADVICE.get(kind, 'fix the value')}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{source}:{line}" if line else source
    return FacegenError(f"{dotted}: {problem}{more}", where=where)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at `loc` (walks the schema's annotations)."""
    model: Any = Manifest
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        model = _model_of(model.model_fields[part].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation
