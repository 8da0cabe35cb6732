"""What a worker hands the shard writer: a finished sample, or a recorded per-sample failure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: WebDataset keys: no dots (they split key from extension), no slashes; sortable ASCII.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class Sample:
    """One dataset sample.

    `files` maps a WebDataset extension (no leading dot: ``"jpg"``, ``"json"``, ``"cls"``,
    ``"lmk.png"``) to the file's bytes; `label` is this sample's row in the shard Parquet
    (``key`` and ``shard`` are filled in by the writer when absent).
    """

    key: str
    files: dict[str, bytes]
    label: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleFailure:
    """A sample that could not be produced (exception, NaN output, undetectable face, ...).

    It is written to the shard's stats (and the run's ``failures.parquet``), never silently dropped.
    """

    key: str
    error: str


@dataclass
class RejectedSample:
    """A sample that was made but is not kept (outside a tolerance of the in-loop verification).

    Its `label` row goes to the shard's ``NNNNNN_rejects.parquet`` (same schema as the shard Parquet,
    `reject_reason` filled in); its files are not written. Counted in the shard stats (``rejected``).
    """

    key: str
    label: dict[str, Any] = field(default_factory=dict)


def check_key(key: str) -> None:
    """Raise ValueError for keys WebDataset would split or mangle."""
    if not KEY_PATTERN.match(key):
        raise ValueError(f"invalid sample key {key!r}: use letters, digits, '_' and '-' only (no dots)")
