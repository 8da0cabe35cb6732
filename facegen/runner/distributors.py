"""Distributors run a :class:`ShardTask` over work units: in this process, or on a pool of Ray actors.

Both yield :class:`UnitOutcome` as units finish (completion order), retry a failed unit a bounded
number of times, and report it failed after that. ``close()`` stops work in flight (Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from facegen.errors import FacegenError
from facegen.io.samples import Sample, SampleFailure
from facegen.io.shards import ShardStats, remove_temporaries
from facegen.runner.task import ShardTask, UnitOutcome, Worker
from facegen.runner.units import WorkUnit

log = logging.getLogger(__name__)

#: Test/fault-drill hook: path of a marker file. The first actor that creates it (atomically) dies with
#: ``os._exit`` after writing the first sample of its first shard, leaving temporaries behind.
CRASH_ENV = "FACEGEN_INJECT_ACTOR_CRASH"


class Distributor(Protocol):
    """Runs a task over units; yields one outcome per unit (order of completion)."""

    def run(self, units: Iterable[WorkUnit], task: ShardTask) -> Iterator[UnitOutcome]: ...

    def close(self) -> None: ...


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class InProcessDistributor:
    """Runs every unit in the calling process with one worker (debugging, small jobs, ``memory://``)."""

    def __init__(self, max_attempts: int = 2) -> None:
        self.max_attempts = max(1, max_attempts)

    def run(self, units: Iterable[WorkUnit], task: ShardTask) -> Iterator[UnitOutcome]:
        worker = task.worker_factory()
        for unit in units:
            last_error = ""
            for attempt in range(1, self.max_attempts + 1):
                try:
                    stats = task.execute(worker, unit)
                except Exception as exc:  # noqa: BLE001 - reported per unit, then retried/failed
                    last_error = _error_text(exc)
                    log.warning("shard %d attempt %d failed: %s", unit.shard, attempt, last_error)
                    continue
                yield UnitOutcome(unit.shard, unit.num_rows, stats, None, attempt)
                break
            else:
                yield UnitOutcome(unit.shard, unit.num_rows, None, last_error, self.max_attempts)

    def close(self) -> None:
        pass


class ShardActor:
    """Body of a Ray actor: builds the worker once, then writes one shard per `run` call."""

    def __init__(self, task: ShardTask, crash_marker: str | None = None) -> None:
        self.task = task
        self.crash_marker = crash_marker
        self.worker: Worker = task.worker_factory()
        self.shards_done = 0

    def ready(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def run(self, unit: WorkUnit) -> ShardStats:
        samples: Iterable[Sample | SampleFailure] = self.worker.process(unit)
        if self.crash_marker and self.shards_done == 0:
            samples = self._crash_after_first(samples)
        stats = self.task.execute(self.worker, unit, samples)
        self.shards_done += 1
        return stats

    def _crash_after_first(self, samples: Iterable[Sample | SampleFailure]) -> Iterator[Sample | SampleFailure]:
        for i, sample in enumerate(samples):
            if i == 1 and _claim(self.crash_marker):  # the first sample is already in the temp tar
                os._exit(17)
            yield sample


def _claim(marker: str | None) -> bool:
    if not marker:
        return False
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def connect_ray(address: str | None = None) -> bool:
    """Join `address` (or $RAY_ADDRESS, e.g. inside a Ray job), else start a local Ray sized to the
    machine. Actor output stays in Ray's logs, not the terminal. Returns True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address:
        kwargs["address"] = address
    elif not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    return True


class RayDistributor:
    """A pool of Ray actors, each holding one worker; a dead actor's in-flight unit goes to another.

    Args:
        num_actors: actors in the pool (each loads the worker, e.g. the model, once).
        num_cpus: CPUs reserved per actor; fractional values are fine (default: cluster CPUs / actors,
            at most 1 on GPU actors). On small machines keep the total below the CPU count.
        num_gpus: GPUs per actor (0 on CPU; 1, or 0.5 to pack two actors per GPU).
        max_attempts: tries per unit (actor death or worker exception) before it is reported failed.
        max_replacements: actors that may be started to replace dead ones (default 2 x num_actors).
        address: Ray address to connect to when Ray is not initialised yet (None = start a local Ray).
        actor_options: extra ``ray.remote`` options (``runtime_env``, ``resources``, ...).
    """

    def __init__(
        self,
        num_actors: int = 1,
        *,
        num_cpus: float | None = None,
        num_gpus: float = 0.0,
        max_attempts: int = 3,
        max_replacements: int | None = None,
        address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        crash_marker: str | None = None,
    ) -> None:
        if num_actors < 1:
            raise FacegenError("must be at least 1", where="--num-actors")
        self.num_actors = num_actors
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_attempts = max(1, max_attempts)
        self.max_replacements = 2 * num_actors if max_replacements is None else max_replacements
        self.address = address
        self.actor_options = dict(actor_options or {})
        self.crash_marker = crash_marker if crash_marker is not None else os.environ.get(CRASH_ENV)
        self._actors: list[Any] = []
        self._inflight: dict[Any, tuple[Any, WorkUnit, int]] = {}
        self._started_ray = False
        self._task: ShardTask | None = None
        self._task_ref: Any = None
        self._num_cpus = 0.0
        self._idle: deque[Any] = deque()

    # -- Ray session -------------------------------------------------------------------------
    def _connect(self) -> Any:
        import ray

        self._started_ray = connect_ray(self.address) or self._started_ray
        return ray

    def _resources(self, ray: Any) -> tuple[float, float]:
        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 1.0)), float(total.get("GPU", 0.0))
        if self.num_gpus > 0 and self._started_ray and not self.address and gpus < self.num_gpus:
            raise FacegenError(
                f"asks for {self.num_gpus} GPU(s) per actor but this machine has {gpus:g}; "
                "use --gpus-per-actor 0 for CPU",
                where="--gpus-per-actor",
            )
        num_cpus = self.num_cpus
        if num_cpus is None:
            num_cpus = cpus / self.num_actors
            if self.num_gpus > 0:
                num_cpus = min(num_cpus, 1.0)
        return max(num_cpus, 0.01), self.num_gpus

    def _new_actor(self, ray: Any, task_ref: Any, num_cpus: float) -> Any:
        options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": self.num_gpus,
            "max_restarts": 0,
            "max_task_retries": 0,
            **self.actor_options,
        }
        actor = ray.remote(ShardActor).options(**options).remote(task_ref, self.crash_marker)
        self._actors.append(actor)
        return actor

    # -- scheduling loop ------------------------------------------------------------------------
    def start(self, task: ShardTask, wait: bool = True) -> None:
        """Create the actor pool for `task` (each builds its worker); with `wait`, block until all are
        ready. Optional: `run` starts the pool itself; call this to separate start-up from work."""
        ray = self._connect()
        self._num_cpus, _ = self._resources(ray)
        self._task = task
        self._task_ref = ray.put(task)
        self._idle = deque(self._new_actor(ray, self._task_ref, self._num_cpus) for _ in range(self.num_actors))
        if wait:
            ray.get([actor.ready.remote() for actor in self._idle])

    def run(self, units: Iterable[WorkUnit], task: ShardTask) -> Iterator[UnitOutcome]:
        ray = self._connect()
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        if self._task is not task:
            self.start(task, wait=False)
        task_ref, num_cpus, idle = self._task_ref, self._num_cpus, self._idle
        source = iter(units)
        retry: deque[tuple[WorkUnit, int]] = deque()
        replacements = 0
        exhausted = False

        def next_unit() -> tuple[WorkUnit, int] | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            try:
                return next(source), 1
            except StopIteration:
                exhausted = True
                return None

        starting: dict[Any, Any] = {}  # ready() ref -> replacement actor still loading its worker

        def replace() -> None:
            nonlocal replacements
            if replacements < self.max_replacements:
                replacements += 1
                actor = self._new_actor(ray, task_ref, num_cpus)
                starting[actor.ready.remote()] = actor  # gets work once ready; live actors take retries meanwhile

        while True:
            while idle:
                item = next_unit()
                if item is None:
                    break
                actor = idle.popleft()
                unit, attempt = item
                self._inflight[actor.run.remote(unit)] = (actor, unit, attempt)
            if not self._inflight and not starting:
                item = next_unit()
                if item is None:
                    break
                # Every actor is gone and the replacement budget is spent: fail what is left.
                unit, attempt = item
                yield UnitOutcome(unit.shard, unit.num_rows, None, "no actors left (all died)", attempt)
                continue
            ready, _ = ray.wait([*self._inflight, *starting], num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except RayActorError as exc:
                        log.warning("replacement actor failed to start: %s", _error_text(exc).splitlines()[0])
                        self._forget(ray, actor)
                        replace()
                    else:
                        idle.append(actor)
                    continue
                actor, unit, attempt = self._inflight.pop(ref)
                try:
                    stats = ray.get(ref)
                except RayActorError as exc:  # the process died: crash, OOM kill, node loss
                    error = f"actor died: {_error_text(exc).splitlines()[0]}"
                    self._forget(ray, actor)
                    remove_temporaries(task.root, unit.shard)  # nothing else writes this shard now
                    replace()
                except (RayTaskError, GetTimeoutError) as exc:  # the worker raised; the actor lives on
                    error = _error_text(exc).splitlines()[-1] if str(exc) else type(exc).__name__
                    idle.append(actor)
                else:
                    idle.append(actor)
                    yield UnitOutcome(unit.shard, unit.num_rows, stats, None, attempt)
                    continue
                log.warning("shard %d attempt %d failed: %s", unit.shard, attempt, error)
                if attempt < self.max_attempts:
                    retry.append((unit, attempt + 1))
                else:
                    yield UnitOutcome(unit.shard, unit.num_rows, None, error, attempt)

    def _forget(self, ray: Any, actor: Any) -> None:
        if actor in self._actors:
            self._actors.remove(actor)
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass

    def close(self) -> None:
        """Kill the actors (waiting briefly for in-flight calls to end) and stop Ray if we started it."""
        import ray

        if not ray.is_initialized():
            return
        for actor in list(self._actors):
            self._forget(ray, actor)
        self._idle.clear()
        self._task = None
        if self._inflight:
            try:
                ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=10.0)
            except Exception:  # noqa: BLE001
                log.debug("waiting for killed actors: %s", traceback.format_exc())
            self._inflight.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
