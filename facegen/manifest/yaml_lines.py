"""YAML loading that remembers where each value was written, so errors can name a line.

One parse: `yaml.SafeLoader` composes the node tree (with source marks), the tree is bounded, and the
data is constructed from that same tree. The bounds keep hostile input cheap:
  - the text size (`FACEGEN_MAX_MANIFEST_BYTES`, checked by the caller before reading a file, and here);
  - nesting depth (a RecursionError while composing becomes a one-line error);
  - the number of values after alias expansion (`FACEGEN_MAX_MANIFEST_VALUES`): a few hundred bytes of
    nested anchors ("billion laughs") expand to 10**9 values. Sizes are counted per node, shared nodes
    once, so the check itself never expands anything; recursive aliases are refused.
The line map `{("targets", "emotion", "happy"): line}` visits every node once: paths below an alias
are not expanded and resolve (via `line_for`) to the line where the alias is used.
"""

from __future__ import annotations

from typing import Any

import yaml

from facegen.errors import FacegenError
from facegen.manifest.limits import ENV_MANIFEST_BYTES, ENV_MANIFEST_VALUES, human_bytes, max_manifest_bytes, max_manifest_values

LineMap = dict[tuple[Any, ...], int]


def check_size(num_bytes: int, source: str) -> None:
    """Refuse manifests larger than FACEGEN_MAX_MANIFEST_BYTES (before reading or parsing them)."""
    limit = max_manifest_bytes()
    if num_bytes > limit:
        raise FacegenError(
            f"the manifest is {human_bytes(num_bytes)} ({num_bytes:,} bytes), above the {human_bytes(limit)} limit; "
            f"a manifest describes a dataset in a few lines (put long lists in files it points to), "
            f"or raise {ENV_MANIFEST_BYTES}",
            where=source,
        )


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse `text` safely; return the data and a map from key path to 1-based line number."""
    check_size(len(text.encode("utf-8", errors="surrogatepass")), source)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        lines: LineMap = {}
        if root is not None:
            _check_expansion(root, source)
            _walk(root, (), lines, source, set())  # before constructing: merge keys (<<) rewrite the tree
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FacegenError(f"not valid YAML ({problem}); fix the syntax", where=f"{source}{line}") from None
    except RecursionError:
        raise FacegenError("the YAML is nested too deeply; a manifest needs only a few levels", where=source) from None
    finally:
        loader.dispose()
    return data, lines


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a node graph whose alias-expanded tree has more than FACEGEN_MAX_MANIFEST_VALUES nodes."""
    limit = max_manifest_values()
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: each distinct node is sized once
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > limit:
                raise FacegenError(
                    f"the value starting here expands to more than {limit:,} values through YAML aliases (*name); "
                    f"write the values out without nested aliases, or raise {ENV_MANIFEST_VALUES}",
                    where=f"{source}:{node.start_mark.line + 1}",
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise FacegenError(
                "a YAML alias refers to a value that contains it (a recursive alias); remove the alias",
                where=f"{source}:{node.start_mark.line + 1}",
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, source: str, seen_nodes: set[int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen_nodes:  # reached again through an alias: its inside is already mapped
        return
    seen_nodes.add(id(node))
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
            _walk(value_node, sub, lines, source, seen_nodes)
            lines[sub] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, source, seen_nodes)


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
