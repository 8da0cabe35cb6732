"""A stand-in worker with the real protocol: no model, fixed time per shard, optional faults.

Used by fault drills, the runner tests and ``benchmarks/balance_overhead.py`` (simulated actors).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from facegen.io.samples import Sample, SampleFailure
from facegen.runner.units import WorkUnit


class SimulatedWorker:
    """Sleeps `seconds_per_shard`, then yields one small sample per row (key from the ``key`` column).

    Faults: rows whose key is in `fail_keys` become :class:`SampleFailure`; the first attempt at each shard
    in `crash_shards` kills the process (``os._exit``) mid-shard, claimed once per shard through a marker
    file in `crash_dir` so the retry succeeds (after the first sample, or at `crash_at` x the shard's time
    when `crash_at` < 1); shards in `fail_shards` always raise (a worker bug). `label_rows`: each sample's
    label is its whole row (like the generation worker's plan columns) over `label_defaults`, else just
    its index. `jitter` spreads shard times (see :meth:`shard_seconds`); real shards differ in length, and
    identical ones keep every actor in step, all writing at the same moment.
    ``SimulatedWorker(0.0)`` is the zero-cost worker of ``benchmarks/driver_scale.py``.
    """

    def __init__(
        self,
        seconds_per_shard: float = 0.0,
        fail_keys: frozenset[str] | set[str] = frozenset(),
        crash_shards: frozenset[int] | set[int] = frozenset(),
        crash_dir: str | None = None,
        fail_shards: frozenset[int] | set[int] = frozenset(),
        crash_at: float = 1.0,
        label_rows: bool = False,
        label_defaults: dict[str, Any] | None = None,
        jitter: float = 0.0,
    ) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.seconds_per_shard = seconds_per_shard
        self.jitter = jitter
        self.fail_keys = frozenset(fail_keys)
        self.crash_shards = frozenset(crash_shards)
        self.crash_dir = crash_dir
        self.fail_shards = frozenset(fail_shards)
        self.crash_at = crash_at
        self.label_rows = label_rows
        self.label_defaults = dict(label_defaults or {})
        self.pid = os.getpid()

    def shard_seconds(self, shard: int) -> float:
        """The time shard `shard` takes: `seconds_per_shard` x (1 + jitter x (2u - 1)), u in [0, 1) the
        golden-ratio sequence of the shard index, so any run of consecutive shards averages
        `seconds_per_shard` within ~1% (a 20-shard baseline and a 320-shard pool do about the same mean work;
        the benchmark counts the exact total anyway)."""
        u = (shard * 0.6180339887498949) % 1.0
        return self.seconds_per_shard * (1.0 + self.jitter * (2.0 * u - 1.0))

    def process(self, unit: WorkUnit) -> Iterator[Sample | SampleFailure]:
        crashing = unit.shard in self.crash_shards
        seconds = self.shard_seconds(unit.shard)
        if crashing and self.crash_at < 1.0:  # die part-way through the shard's time, before any sample
            time.sleep(seconds * self.crash_at)
            if self._claim(unit.shard):
                os._exit(23)
            time.sleep(seconds * (1.0 - self.crash_at))
        elif seconds:
            time.sleep(seconds)
        if unit.shard in self.fail_shards:
            raise RuntimeError(f"injected error in shard {unit.shard}")
        for i, row in enumerate(unit.rows.to_pylist()):
            if i == 1 and crashing and self.crash_at >= 1.0 and self._claim(unit.shard):
                os._exit(23)
            key = str(row["key"])
            if key in self.fail_keys:
                yield SampleFailure(key, "ValueError: injected failure")
                continue
            payload = {"key": key, "index": row.get("index", i)}
            label = {**self.label_defaults, **row} if self.label_rows else {"index": payload["index"]}
            yield Sample(key, {"txt": key.encode(), "json": json.dumps(payload).encode()}, label)

    def _claim(self, shard: int) -> bool:
        if not self.crash_dir:
            return False
        try:
            os.close(os.open(os.path.join(self.crash_dir, f"crash-{shard}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True
