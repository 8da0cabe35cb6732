"""YAML loading that remembers where each value was written, so errors can name a line.

`yaml.compose` (safe) keeps a node tree with source marks; we walk it once to build
`{("targets", "emotion", "happy"): line}` and load the data itself with `yaml.safe_load`.
"""

from __future__ import annotations

from typing import Any

import yaml

from facegen.errors import FacegenError

LineMap = dict[tuple[Any, ...], int]


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse `text` safely; return the data and a map from key path to 1-based line number."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FacegenError(f"not valid YAML ({problem}); fix the syntax", where=f"{source}{line}") from None
    lines: LineMap = {}
    if root is not None:
        _walk(root, (), lines, source)
    return data, lines


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, source: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = path + (key,)
            if key in seen:  # safe_load would silently keep the last one
                dotted = ".".join(map(str, sub))
                raise FacegenError(f"{dotted}: duplicate key; keep only one", where=f"{source}:{key_node.start_mark.line + 1}")
            seen.add(key)
            lines[sub] = key_node.start_mark.line + 1  # the key's line reads best in an error
            _walk(value_node, sub, lines, source)
            lines[sub] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, source)


def line_for(lines: LineMap, loc: tuple[Any, ...]) -> tuple[int | None, tuple[Any, ...]]:
    """Best line for a validation error location and the cleaned path that led there.

    Pydantic locations may contain union/validator tags ("function-after[...]", "dict[str,float]");
    elements that are not keys at the current level are skipped.
    """
    path: tuple[Any, ...] = ()
    for part in loc:
        for candidate in (part, str(part)):
            if path + (candidate,) in lines:
                path = path + (candidate,)
                break
    return lines.get(path), path
