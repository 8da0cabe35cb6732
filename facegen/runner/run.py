"""`run_shards`: resume, distribute, show progress, stop cleanly. The one entry point callers use."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from facegen.io.fs import Location
from facegen.io.shards import SHARDS_DIR, ShardStats, completed_shards, remove_shard, remove_temporaries
from facegen.runner.distributors import Distributor, InProcessDistributor
from facegen.runner.drills import pause_point
from facegen.runner.task import ShardTask
from facegen.runner.units import WorkUnit

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Result of :func:`run_shards`. ``ok`` is False when any shard failed after its retries."""

    done: dict[int, ShardStats] = field(default_factory=dict)  # every finished shard (resumed + new)
    resumed: list[int] = field(default_factory=list)  # finished before this run, skipped
    failed: dict[int, str] = field(default_factory=dict)  # shard -> last error
    retried: dict[int, int] = field(default_factory=dict)  # shard -> attempts, when > 1
    damaged: dict[int, str] = field(default_factory=dict)  # finished earlier but failed verification: redone
    seconds: float = 0.0
    new_samples: int = 0  # samples written by this run

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def samples(self) -> int:
        return sum(s.count for s in self.done.values())

    @property
    def sample_failures(self) -> int:
        return sum(s.failures for s in self.done.values())


def verified_finished(root: Location, fingerprint: str) -> tuple[dict[int, ShardStats], dict[int, str]]:
    """(finished shards whose tar + Parquet hash to their stats, damaged shards -> what differs). The
    damaged ones are deleted (stats first), so they are redone from scratch like unfinished ones."""
    damaged: dict[int, str] = {}
    finished = completed_shards(root, fingerprint, verify=True, damaged=damaged)
    for shard, problem in sorted(damaged.items()):
        log.warning("shard %06d is damaged (%s); redoing it", shard, problem)
        remove_shard(root, shard)
    return finished, damaged


def run_shards(
    units: Iterable[WorkUnit],
    task: ShardTask,
    distributor: Distributor | None = None,
    *,
    total_rows: int | None = None,
    progress: bool = True,
    description: str = "generating",
    finished: tuple[dict[int, ShardStats], dict[int, str]] | None = None,
) -> RunSummary:
    """Write every unit's shard under ``task.output_url`` exactly once.

    Shards already finished by a run with the same fingerprint, whose files still hash to their stats,
    are skipped (resume); the others, damaged ones included, are redone from scratch (`finished`: the
    result of :func:`verified_finished` when the caller already ran it). `units` may be a lazy
    iterable (pass `total_rows` for the progress bar), and units of finished shards are dropped before
    they reach the distributor. Ctrl-C kills in-flight work,
    removes temporaries, keeps finished shards and re-raises ``KeyboardInterrupt``.
    """
    started = time.perf_counter()
    distributor = distributor or InProcessDistributor()
    root = task.root
    root.makedirs(SHARDS_DIR)
    removed = remove_temporaries(root)
    if removed:
        log.info("removed %d temporary file(s) of an interrupted run", removed)
    finished_shards, damaged = finished if finished is not None else verified_finished(root, task.fingerprint)
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

    resumed_rows = sum(s.count + s.failures for s in finished_shards.values())
    bar = tqdm(
        total=total_rows,
        initial=min(resumed_rows, total_rows) if total_rows else resumed_rows,
        unit="img",
        desc=description,
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    try:
        for outcome in distributor.run(todo(), task):
            if outcome.attempts > 1:
                summary.retried[outcome.shard] = outcome.attempts
            if outcome.stats is not None:
                summary.done[outcome.shard] = outcome.stats
                summary.new_samples += outcome.stats.count
            else:
                summary.failed[outcome.shard] = outcome.error or "unknown error"
                log.error("shard %d failed after %d attempt(s): %s", outcome.shard, outcome.attempts, outcome.error)
            bar.update(outcome.num_rows)
            bar.set_postfix(shards=len(summary.done), failed=len(summary.failed), refresh=False)
            pause_point("shard-done")
    except BaseException:
        distributor.close()
        remove_temporaries(root)
        raise
    finally:
        bar.close()
    distributor.close()
    remove_temporaries(root)  # of attempts that died (nothing is in flight any more)
    summary.seconds = time.perf_counter() - started
    return summary
