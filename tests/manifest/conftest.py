"""Helpers for manifest tests: a valid base manifest as text, with line-level variants."""

from __future__ import annotations

from pathlib import Path

import pytest

BASE_LINES = [
    "version: 1",  # 1
    "seed: 0",  # 2
    "model: tiny",  # 3
    "sampler:",  # 4
    "  scheduler: dpmpp",  # 5
    "  steps: 4",  # 6
    "  guidance: {id: 2.5, lmk: 2.0, emo: 2.0}",  # 7
    "  batch_size: 4",  # 8
    "output:",  # 9
    "  samples_per_shard: 8",  # 10
    "  image_format: jpg",  # 11
    "identities:",  # 12
    "  random: {count: 4, max_similarity: 0.3}",  # 13
    "images_per_identity: 4",  # 14
    "targets:",  # 15
    "  emotion: uniform",  # 16
    "  pose:",  # 17
    "    yaw: {uniform: [-30, 30]}",  # 18
    "  expression: neutral",  # 19
    "  controls: id+lmk+emo",  # 20
]


def _manifest_text(replace: dict[int, str] | None = None, append: str = "") -> str:
    """The base manifest with 1-based lines replaced (a replacement may span several lines)."""
    lines = list(BASE_LINES)
    for lineno, text in (replace or {}).items():
        lines[lineno - 1] = text
    return "\n".join(lines) + "\n" + append


@pytest.fixture
def write_manifest(tmp_path: Path):
    """Write manifest text into tmp_path/m.yaml and return the path."""

    def write(text: str, name: str = "m.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def manifest_text():
    """`manifest_text(replace={line: text}, append="...")` -> the base manifest with edits."""
    return _manifest_text
