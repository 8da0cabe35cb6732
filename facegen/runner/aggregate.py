"""Driver-side aggregation that stays small at a million shards: a compact per-shard ledger of results
(what :class:`~facegen.runner.run.RunSummary` keeps) and the marker check a verifying actor runs."""

from __future__ import annotations

import operator
from array import array
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass

from facegen.io.fs import Location
from facegen.io.shards import ShardStats, check_shard

_NO_FAILURES: tuple[dict[str, str], ...] = ()
#: Shards whose markers one verification call checks (on an actor, or a thread of the driver).
VERIFY_BATCH = 256


@dataclass(frozen=True, slots=True)
class ShardDone:
    """What the driver keeps of a finished shard (its stats file has the rest: hashes, host, ...)."""

    shard: int
    count: int
    failures: int
    seconds: float
    finished_at: float = 0.0
    failed: tuple[dict[str, str], ...] = _NO_FAILURES  # [{"key", "error"}]
    rejected: int = 0  # samples made but not kept (NNNNNN_rejects.parquet)

    @classmethod
    def of(cls, stats: "ShardStats | ShardDone") -> "ShardDone":
        if isinstance(stats, ShardDone):
            return stats
        return cls(stats.shard, stats.count, stats.failures, stats.seconds, stats.finished_at,
                   tuple(stats.failed) if stats.failed else _NO_FAILURES, getattr(stats, "rejected", 0))


class ShardLedger(MutableMapping[int, ShardDone]):
    """shard -> :class:`ShardDone`, stored column-wise in arrays indexed by shard number (~33 bytes per
    shard instead of a ~2 KB stats object), with running totals; failure lists only for shards that have
    some. Shard numbers are dense in practice (0..N-1); far-out ones go to a small overflow dict."""

    def __init__(self, items: Iterable[ShardStats | ShardDone] = ()) -> None:
        self._count = array("q")
        self._failures = array("q")
        self._rejected = array("q")
        self._seconds = array("d")
        self._finished = array("d")
        self._present = bytearray()
        self._failed: dict[int, tuple[dict[str, str], ...]] = {}
        self._overflow: dict[int, ShardDone] = {}
        self._len = 0
        self.samples = 0
        self.sample_failures = 0
        self.rejected = 0
        self.seconds = 0.0
        for item in items:
            self[item.shard] = item

    def _grow(self, shard: int) -> bool:
        size = len(self._present)
        if shard < size:
            return True
        if shard > 4 * size + (1 << 20):  # far beyond what is held: not worth dense storage
            return False
        new = max(shard + 1, 2 * size, 1024)
        extra = new - size
        self._count.extend(array("q", bytes(8 * extra)))
        self._failures.extend(array("q", bytes(8 * extra)))
        self._rejected.extend(array("q", bytes(8 * extra)))
        self._seconds.extend(array("d", bytes(8 * extra)))
        self._finished.extend(array("d", bytes(8 * extra)))
        self._present.extend(bytes(extra))
        return True

    def __setitem__(self, shard: int, stats: ShardStats | ShardDone) -> None:
        done = ShardDone.of(stats)
        if shard in self:
            del self[shard]
        self._add(done, 1)
        if shard < 0 or not self._grow(shard):
            self._overflow[shard] = done
            return
        self._count[shard], self._failures[shard], self._rejected[shard] = done.count, done.failures, done.rejected
        self._seconds[shard], self._finished[shard] = done.seconds, done.finished_at
        self._present[shard] = 1
        if done.failed:
            self._failed[shard] = done.failed
        else:
            self._failed.pop(shard, None)

    def _add(self, done: ShardDone, sign: int) -> None:
        self.samples += sign * done.count
        self.sample_failures += sign * done.failures
        self.rejected += sign * done.rejected
        self.seconds += sign * done.seconds
        self._len += sign

    def __delitem__(self, shard: int) -> None:
        done = self[shard]
        self._add(done, -1)
        if shard in self._overflow:
            del self._overflow[shard]
        else:
            self._present[shard] = 0
            self._failed.pop(shard, None)

    def __getitem__(self, shard: int) -> ShardDone:
        shard = operator.index(shard)
        if 0 <= shard < len(self._present) and self._present[shard]:
            return ShardDone(shard, self._count[shard], self._failures[shard], self._seconds[shard],
                             self._finished[shard], self._failed.get(shard, _NO_FAILURES), self._rejected[shard])
        try:
            return self._overflow[shard]
        except KeyError:
            raise KeyError(shard) from None

    def __contains__(self, shard: object) -> bool:
        try:
            shard = operator.index(shard)  # numpy integers too
        except TypeError:
            return False
        if 0 <= shard < len(self._present):
            return bool(self._present[shard])
        return shard in self._overflow

    def __iter__(self) -> Iterator[int]:
        """Shards in ascending order."""
        dense = (i for i, flag in enumerate(self._present) if flag)
        if not self._overflow:
            yield from dense
            return
        yield from sorted([*dense, *self._overflow])

    def __len__(self) -> int:
        return self._len

    def rejected_shards(self) -> list[int]:
        """Shards with rejected samples, ascending (from the arrays: no per-shard object is built)."""
        import numpy as np

        size = len(self._present)
        if size:
            present = np.frombuffer(self._present, np.uint8)
            rejected = np.frombuffer(self._rejected, np.int64)[:size]
            dense = np.flatnonzero((present != 0) & (rejected != 0)).tolist()
        else:
            dense = []
        extra = [s for s, d in self._overflow.items() if d.rejected]
        return sorted(dense + extra) if extra else dense

    def failed_items(self) -> Iterator[tuple[int, tuple[dict[str, str], ...]]]:
        """(shard, failed samples) of the shards that have any, ascending."""
        items = dict(self._failed)
        items.update({s: d.failed for s, d in self._overflow.items() if d.failed})
        yield from sorted(items.items())


def check_shards(root: Location, shards: Iterable[int], fingerprint: str) -> list[tuple[int, ShardDone | None, str | None]]:
    """:func:`~facegen.io.shards.check_shard` (marker read, sizes, sha256 of tar + Parquet) on each shard:
    (shard, compact result or None, problem or None). What a verifying actor runs on one batch."""
    out: list[tuple[int, ShardDone | None, str | None]] = []
    for shard in shards:
        stats, problem = check_shard(root, shard, fingerprint)
        out.append((shard, ShardDone.of(stats) if stats is not None else None, problem))
    return out
