"""Fault-drill hooks for the reliability tests (like ``FACEGEN_INJECT_ACTOR_CRASH``): inert unless set.

``FACEGEN_DRILL_PAUSE=NAME:/path/marker`` makes the driver, on reaching the pause point NAME, create the
marker file and wait there until the test deletes the marker (at most 60 s), so a test can deliver
SIGINT / SIGTERM, or start a competing run, at exactly that moment.
Pause points of ``balance``: ``plan`` (lock taken, before the plan is written), ``distribute`` (before
Ray is joined/started), ``shard-done`` (after the first finished shard, in ``run_shards``),
``shard-done-N`` (after shard N finished: e.g. a shard of a later regeneration round), ``round-R``
(regeneration round R's rows written, before its first shard), ``finalize`` (shards done, before labels
and reports).
"""

from __future__ import annotations

import os
import time

DRILL_ENV = "FACEGEN_DRILL_PAUSE"
_paused: set[str] = set()  # each point pauses once per process


def pause_point(name: str) -> None:
    spec = os.environ.get(DRILL_ENV)
    if not spec:
        return
    want, _, marker = spec.partition(":")
    if want != name or not marker or name in _paused:
        return
    _paused.add(name)
    with open(marker, "w"):
        pass
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.path.exists(marker):
        time.sleep(0.05)


__all__ = ["DRILL_ENV", "pause_point"]
