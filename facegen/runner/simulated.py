"""A stand-in worker with the real protocol: no model, fixed time per shard, optional faults.

Used by fault drills, the runner tests and ``benchmarks/balance_overhead.py`` (simulated actors).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from facegen.io.samples import Sample, SampleFailure
from facegen.runner.units import WorkUnit


class SimulatedWorker:
    """Sleeps `seconds_per_shard`, then yields one small sample per row (key from the ``key`` column).

    Faults: rows whose key is in `fail_keys` become :class:`SampleFailure`; the first attempt at each shard
    in `crash_shards` kills the process (``os._exit``) mid-shard, claimed once per shard through a marker
    file in `crash_dir` so the retry succeeds; shards in `fail_shards` always raise (a worker bug).
    """

    def __init__(
        self,
        seconds_per_shard: float = 0.0,
        fail_keys: frozenset[str] | set[str] = frozenset(),
        crash_shards: frozenset[int] | set[int] = frozenset(),
        crash_dir: str | None = None,
        fail_shards: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        self.seconds_per_shard = seconds_per_shard
        self.fail_keys = frozenset(fail_keys)
        self.crash_shards = frozenset(crash_shards)
        self.crash_dir = crash_dir
        self.fail_shards = frozenset(fail_shards)
        self.pid = os.getpid()

    def process(self, unit: WorkUnit) -> Iterator[Sample | SampleFailure]:
        time.sleep(self.seconds_per_shard)
        if unit.shard in self.fail_shards:
            raise RuntimeError(f"injected error in shard {unit.shard}")
        for i, row in enumerate(unit.rows.to_pylist()):
            if i == 1 and unit.shard in self.crash_shards and self._claim(unit.shard):
                os._exit(23)
            key = str(row["key"])
            if key in self.fail_keys:
                yield SampleFailure(key, "ValueError: injected failure")
                continue
            payload = {"key": key, "index": row.get("index", i)}
            yield Sample(key, {"txt": key.encode(), "json": json.dumps(payload).encode()}, {"index": payload["index"]})

    def _claim(self, shard: int) -> bool:
        if not self.crash_dir:
            return False
        try:
            os.close(os.open(os.path.join(self.crash_dir, f"crash-{shard}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True
