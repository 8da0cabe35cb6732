"""`run_shards`: resume, distribute, show progress, stop cleanly. The one entry point callers use."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from facegen.io.fs import Location
from facegen.io.shards import SHARDS_DIR, marked_shards, remove_shard, remove_temporaries
from facegen.runner.aggregate import VERIFY_BATCH, ShardDone, ShardLedger, check_shards
from facegen.runner.distributors import Distributor, InProcessDistributor
from facegen.runner.drills import pause_point
from facegen.runner.task import ShardTask
from facegen.runner.units import WorkUnit, units_from_parquet

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Result of :func:`run_shards`. ``ok`` is False when any shard failed after its retries.

    `done` is a :class:`~facegen.runner.aggregate.ShardLedger` (shard -> ``ShardDone``: count, failures,
    rejected, seconds, finished_at, failed samples), aggregated as results arrive (~33 bytes per shard)."""

    done: MutableMapping[int, Any] = field(default_factory=ShardLedger)  # every finished shard (resumed + new)
    resumed: list[int] = field(default_factory=list)  # finished before this run, skipped
    failed: dict[int, str] = field(default_factory=dict)  # shard -> last error
    retried: dict[int, int] = field(default_factory=dict)  # shard -> attempts, when > 1
    damaged: dict[int, str] = field(default_factory=dict)  # finished earlier but failed verification: redone
    seconds: float = 0.0
    new_samples: int = 0  # samples written by this run
    new_seconds: float = 0.0  # actor seconds of the shards written by this run
    new_generated: int = 0  # images this run made: written + rejected + failed samples

    def merge(self, other: "RunSummary") -> None:
        """Add another call's result (a later regeneration round) to this one."""
        self.done.update(other.done)
        known = set(self.resumed)  # a set: `in` on the list made this quadratic (1M resumed shards)
        self.resumed.extend(s for s in other.resumed if s not in known)
        self.failed.update(other.failed)
        self.retried.update(other.retried)
        self.damaged.update(other.damaged)
        self.seconds += other.seconds
        self.new_samples += other.new_samples
        self.new_seconds += other.new_seconds
        self.new_generated += other.new_generated

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def samples(self) -> int:
        if isinstance(self.done, ShardLedger):
            return self.done.samples
        return sum(s.count for s in self.done.values())

    @property
    def sample_failures(self) -> int:
        if isinstance(self.done, ShardLedger):
            return self.done.sample_failures
        return sum(s.failures for s in self.done.values())


def verified_finished(
    root: Location, fingerprint: str, distributor: Distributor | None = None, task: ShardTask | None = None
) -> tuple[ShardLedger, dict[int, str]]:
    """(finished shards whose tar + Parquet hash to their stats, damaged shards -> what differs). The
    damaged ones are deleted (stats first), so they are redone from scratch like unfinished ones.

    The driver only lists ``shards/`` (marker names; no marker is opened here): reading each marker and
    hashing its files is done by the distributor's ``verify`` (on the actors of a Ray pool, in batches of
    :data:`VERIFY_BATCH`) when `task` is given, else on a few threads of this process."""
    marked = marked_shards(root)
    finished = ShardLedger()
    damaged: dict[int, str] = {}
    if marked:
        verify = getattr(distributor, "verify", None)
        if verify is not None and task is not None and task.fingerprint == fingerprint:
            results: Iterable[tuple[int, ShardDone | None, str | None]] = verify(marked, task)
        else:
            results = verify_locally(root, marked, fingerprint)
        for shard, done, problem in results:
            if done is not None:
                finished[shard] = done
            elif problem is not None:
                damaged[shard] = problem
    for shard, problem in sorted(damaged.items()):
        log.warning("shard %06d is damaged (%s); redoing it", shard, problem)
        remove_shard(root, shard)
    return finished, damaged


def verify_locally(root: Location, shards: Sequence[int], fingerprint: str) -> Iterator[tuple[int, ShardDone | None, str | None]]:
    """Check marked shards on a few threads of this process (in-process runs, callers without a pool)."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [shards[i : i + VERIFY_BATCH] for i in range(0, len(shards), VERIFY_BATCH)]
    with ThreadPoolExecutor(max_workers=min(8, len(batches))) as pool:
        for result in pool.map(lambda b: check_shards(root, b, fingerprint), batches):
            yield from result


def run_shards(
    units: Iterable[WorkUnit],
    task: ShardTask,
    distributor: Distributor | None = None,
    *,
    total_rows: int | None = None,
    progress: bool = True,
    description: str = "generating",
    finished: tuple[Mapping[int, Any], dict[int, str]] | None = None,
    close: bool = True,
) -> RunSummary:
    """Write every unit's shard under ``task.output_url`` exactly once.

    Shards already finished by a run with the same fingerprint, whose files still hash to their stats,
    are skipped (resume); the others, damaged ones included, are redone from scratch (`finished`: the
    result of :func:`verified_finished` when the caller already ran it). `units` may be a lazy
    iterable (pass `total_rows` for the progress bar), and units of finished shards are dropped before
    they reach the distributor. Ctrl-C kills in-flight work,
    removes temporaries, keeps finished shards and re-raises ``KeyboardInterrupt``. With ``close=False``
    the distributor (its actors, each holding its loaded worker) stays up for another call with the same
    task (regeneration rounds); it is still closed on any exception.
    """
    started = time.perf_counter()
    distributor = distributor or InProcessDistributor()
    root = task.root
    root.makedirs(SHARDS_DIR)
    removed = remove_temporaries(root)
    if removed:
        log.info("removed %d temporary file(s) of an interrupted run", removed)
    finished_shards, damaged = (
        finished if finished is not None else verified_finished(root, task.fingerprint, distributor, task)
    )
    summary = RunSummary(damaged=dict(damaged))

    if total_rows is None and isinstance(units, Sequence):
        total_rows = sum(u.num_rows for u in units)

    def todo() -> Iterable[WorkUnit]:
        for unit in units:
            if unit.shard in finished_shards:
                summary.done[unit.shard] = finished_shards[unit.shard]
                summary.resumed.append(unit.shard)
                bar.update(0)  # keeps the bar's postfix fresh while skipping
            else:
                yield unit

    if isinstance(finished_shards, ShardLedger):
        resumed_rows = finished_shards.samples + finished_shards.sample_failures + finished_shards.rejected
    else:
        resumed_rows = sum(s.count + s.failures + getattr(s, "rejected", 0) for s in finished_shards.values())
    bar = tqdm(
        total=total_rows,
        initial=min(resumed_rows, total_rows) if total_rows else resumed_rows,
        unit="img",
        desc=description,
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    postfix_at = 0.0
    try:
        for outcome in distributor.run(todo(), task):
            if outcome.attempts > 1:
                summary.retried[outcome.shard] = outcome.attempts
            if outcome.stats is not None:
                summary.done[outcome.shard] = outcome.stats
                summary.new_samples += outcome.stats.count
                summary.new_seconds += outcome.stats.seconds
                summary.new_generated += outcome.stats.count + outcome.stats.rejected + outcome.stats.failures
            else:
                summary.failed[outcome.shard] = outcome.error or "unknown error"
                log.error("shard %d failed after %d attempt(s): %s", outcome.shard, outcome.attempts, outcome.error)
            bar.update(outcome.num_rows)
            now = time.monotonic()
            if progress and now - postfix_at > 0.5:  # formatting it costs more than a zero-cost shard
                bar.set_postfix(shards=len(summary.done), failed=len(summary.failed), refresh=False)
                postfix_at = now
            pause_point("shard-done")
            pause_point(f"shard-done-{outcome.shard}")  # a drill can stop right after one given shard
    except BaseException:
        distributor.close()
        remove_temporaries(root)
        raise
    finally:
        bar.close()
    if close:
        distributor.close()
    remove_temporaries(root)  # of attempts that died (nothing is in flight any more)
    summary.seconds = time.perf_counter() - started
    return summary


def run_plan(
    plan_url: str,
    task: ShardTask,
    distributor: Distributor | None = None,
    *,
    total_rows: int | None = None,
    progress: bool = True,
    description: str = "generating",
    finished: tuple[Mapping[int, Any], dict[int, str]] | None = None,
    close: bool = True,
) -> RunSummary:
    """:func:`run_shards` over a plan Parquet (``shard`` column, row groups of whole shards), the driver
    path of ``balance``: the plan's row groups of finished shards are never read, and those shards are
    counted as resumed from the listing (`finished`: :func:`verified_finished`, run here when None)."""
    finished = finished if finished is not None else verified_finished(task.root, task.fingerprint, distributor, task)
    skip = finished[0]
    units = units_from_parquet(plan_url, skip=skip)
    run = run_shards(units, task, distributor, total_rows=total_rows, progress=progress, description=description,
                     finished=finished, close=close)
    for shard, stats in skip.items():  # their units never reached run_shards
        if shard not in run.done:
            run.done[shard] = stats
            run.resumed.append(shard)
    return run
