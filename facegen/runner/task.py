"""The worker protocol and the picklable task every distributor runs: build a worker once, then
turn units into written shards."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from facegen.io.fs import Location
from facegen.io.samples import Sample, SampleFailure
from facegen.io.shards import ShardStats, write_shard
from facegen.runner.units import WorkUnit


@runtime_checkable
class Worker(Protocol):
    """Turns one unit into samples. Constructed once per actor (load models in ``__init__``).

    `process` yields :class:`Sample` (key + files + label row) or :class:`SampleFailure` for each of the
    unit's rows, in a deterministic order. Exceptions that escape `process` fail the whole shard
    attempt (it is retried); per-sample problems should be yielded as ``SampleFailure`` instead.
    """

    def process(self, unit: WorkUnit) -> Iterable[Sample | SampleFailure]: ...


#: A picklable zero-argument callable building a worker (a class, or ``functools.partial(Class, ...)``).
WorkerFactory = Callable[[], Worker]


@dataclass(frozen=True)
class ShardTask:
    """Everything an actor needs: how to build its worker and where/how to write shards."""

    worker_factory: WorkerFactory
    output_url: str
    fingerprint: str
    label_schema: pa.Schema | None = None
    extra_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Location:
        return Location(self.output_url)

    def execute(self, worker: Worker, unit: WorkUnit, samples: Iterable[Sample | SampleFailure] | None = None) -> ShardStats:
        """Run `worker` on `unit` and write the shard (temporaries, renames, stats last)."""
        return write_shard(
            self.root,
            unit.shard,
            worker.process(unit) if samples is None else samples,
            fingerprint=self.fingerprint,
            label_schema=self.label_schema,
            extra=self.extra_stats,
        )


@dataclass
class UnitOutcome:
    """What a distributor reports per unit: stats when written, else the last error."""

    shard: int
    num_rows: int
    stats: ShardStats | None
    error: str | None = None
    attempts: int = 1
