"""`load_manifest`: YAML -> validated `Manifest`, or one `FacegenError` line naming file:line and field."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from facegen.errors import FacegenError
from facegen.manifest.schema import Manifest
from facegen.manifest.yaml_lines import LineMap, line_for, load_yaml_with_lines

# What to do, per pydantic error type, when the message alone does not say it.
_ADVICE = {
    "missing": "add it",
    "literal_error": "use one of the listed values",
    "int_type": "write a whole number",
    "float_type": "write a number",
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
    data, lines = load_yaml_with_lines(file.read_text(encoding="utf-8"), source)
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
    if manifest.balance is not None:
        from facegen.manifest.topup import read_source_counts

        read_source_counts(manifest)  # validates the column and its labels
    if manifest.identities.embeddings is not None:
        from facegen.conditions.identities import load_embeddings

        load_embeddings(manifest.identities.embeddings, manifest.identities.embedding_column, manifest=manifest)


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
