"""Read target (planned) and measured label columns under either naming.

Generated labels are moving from plan names (``yaw``, ``emotion``, ...) to ``target_yaw``,
``target_emotion``, ... next to measured columns (``measured``, ``measured_yaw``, ``measured_emotion``,
``accepted``, ...). Reports read through these helpers: the new name first, the old one as fallback, so
they work on datasets of either layout. Nothing here guesses a measurement: absent measured columns (or
``measured`` all false) mean "planned (not measured)".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

#: Label fields that exist as a target (``target_X``, formerly ``X``).
TARGET_FIELDS = ("yaw", "pitch", "roll", "emotion", "emotion_name", "valence", "arousal", "emotion_probs")
#: Label fields that a verifier may measure (``measured_X``).
MEASURED_FIELDS = ("yaw", "pitch", "roll", "emotion", "emotion_name", "emotion_probs", "valence", "arousal")
#: Wording used wherever a count is not a measurement, and where it is.
NOT_MEASURED = "planned (not measured)"
ACHIEVED = "achieved (measured, accepted)"


def _chunked(table: pa.Table | None, names: tuple[str, ...]) -> pa.ChunkedArray | None:
    if table is None:
        return None
    for name in names:
        if name in table.column_names:
            return table.column(name)
    return None


def target_name(table: pa.Table, field: str) -> str | None:
    """The column holding the target of `field` (``target_yaw`` or, in older datasets, ``yaw``)."""
    for name in (f"target_{field}", field):
        if name in table.column_names:
            return name
    return None


def target_values(table: pa.Table | None, field: str) -> list[Any] | None:
    """Python values of the target column of `field`, or None when the table has neither name."""
    col = _chunked(table, (f"target_{field}", field))
    return None if col is None else col.to_pylist()


def target_array(table: pa.Table | None, field: str) -> np.ndarray | None:
    """float array of a numeric target column (NaN for nulls), or None when absent."""
    col = _chunked(table, (f"target_{field}", field))
    return None if col is None else _floats(col)


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    values = col.to_pylist()
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _bools(table: pa.Table | None, name: str, default: bool) -> np.ndarray:
    rows = 0 if table is None else table.num_rows
    if table is None or name not in table.column_names:
        return np.full(rows, default, dtype=bool)
    return np.array([bool(v) for v in table.column(name).to_pylist()], dtype=bool)


def measured_mask(table: pa.Table | None) -> np.ndarray:
    """Per row: was the image measured? (all False when the dataset has no ``measured`` column)."""
    return _bools(table, "measured", False)


def accepted_mask(table: pa.Table | None) -> np.ndarray:
    """Per row: accepted? (all True when the dataset has no ``accepted`` column: nothing was rejected)."""
    return _bools(table, "accepted", True)


def measured_array(table: pa.Table | None, field: str) -> np.ndarray | None:
    """float array of ``measured_<field>`` with NaN wherever the row was not measured (emotion: -1 is
    "not measured" too); None when the column is absent or no row holds a measurement of it."""
    col = _chunked(table, (f"measured_{field}",))
    if col is None:
        return None
    values = _floats(col)
    values[~measured_mask(table)] = np.nan
    if field == "emotion":
        values[values < 0] = np.nan
    return values if np.isfinite(values).any() else None


def is_measured(table: pa.Table | None) -> bool:
    """True when at least one row carries a measurement (``measured`` true)."""
    return bool(measured_mask(table).any())


def measured_fields(table: pa.Table | None) -> list[str]:
    """Which numeric MEASURED_FIELDS hold at least one measurement."""
    if not is_measured(table):
        return []
    return [f for f in MEASURED_FIELDS if f not in ("emotion_name", "emotion_probs") and measured_array(table, f) is not None]


__all__ = [
    "ACHIEVED",
    "MEASURED_FIELDS",
    "NOT_MEASURED",
    "TARGET_FIELDS",
    "accepted_mask",
    "is_measured",
    "measured_array",
    "measured_fields",
    "measured_mask",
    "target_array",
    "target_name",
    "target_values",
]
