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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from facegen.errors import FacegenError, environment_error
from facegen.ray_session import connect_ray
from facegen.io.samples import Sample, SampleFailure
from facegen.io.shards import ShardStats, check_shard, prime_shard_writer, remove_temporaries
from facegen.runner.aggregate import VERIFY_BATCH, ShardDone, check_shards
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
                    if environment_error(exc) is not None:
                        raise  # a full or read-only disk: retrying cannot help, stop the run
                    last_error = _error_text(exc)
                    log.warning("shard %d attempt %d failed: %s", unit.shard, attempt, last_error)
                    continue
                yield UnitOutcome(unit.shard, unit.num_rows, stats, None, attempt)
                break
            else:
                yield UnitOutcome(unit.shard, unit.num_rows, None, last_error, self.max_attempts)

    def close(self) -> None:
        pass


class WorkerStartError(Exception):
    """The actor could not build its worker (e.g. load the model): carries the real cause, so the
    driver can say what went wrong instead of "actor died"."""

    def __init__(self, cause: BaseException) -> None:
        self.cause_text = _error_text(cause)
        self.user_error = str(cause) if isinstance(cause, FacegenError) else None
        super().__init__(self.cause_text)

    def __reduce__(self) -> Any:
        return (_rebuild_start_error, (self.cause_text, self.user_error))


def _rebuild_start_error(cause_text: str, user_error: str | None) -> "WorkerStartError":
    err = WorkerStartError.__new__(WorkerStartError)
    Exception.__init__(err, cause_text)
    err.cause_text, err.user_error = cause_text, user_error
    return err


def start_failure(error: "WorkerStartError") -> FacegenError:
    """The one-line error for actors that cannot build their worker."""
    if error.user_error:
        return FacegenError(f"{error.user_error} (raised while the actors started)")
    return FacegenError(
        f"{error.cause_text}; the actors could not build their worker: fix the cause (model folder, "
        "dependencies, GPU) and re-run",
        where="actor start-up",
    )


class ShardActor:
    """Body of a Ray actor: builds the worker once, then writes one shard per `run` call. A worker that
    cannot be built makes every call raise :class:`WorkerStartError` with the real cause."""

    def __init__(self, task: ShardTask, crash_marker: str | None = None) -> None:
        self.task = task
        self.crash_marker = crash_marker
        self.start_error: WorkerStartError | None = None
        try:
            self.worker: Worker = task.worker_factory()
        except Exception as exc:  # noqa: BLE001 - reported by ready()/run() with its real cause
            self.start_error = WorkerStartError(exc)
        prime_shard_writer()  # part of start-up, not of the first shard
        self.shards_done = 0

    def ready(self) -> tuple[str, int]:
        if self.start_error is not None:
            raise self.start_error
        return socket.gethostname(), os.getpid()

    def run(self, unit: WorkUnit) -> ShardStats:
        if self.start_error is not None:
            raise self.start_error
        samples: Iterable[Sample | SampleFailure] = self.worker.process(unit)
        if self.crash_marker and self.shards_done == 0:
            samples = self._crash_after_first(samples)
        stats = self.task.execute(self.worker, unit, samples)
        self.shards_done += 1
        return stats

    def run_batch(self, units: list[WorkUnit]) -> list[tuple[ShardStats | None, str | None]]:
        """Several short units in one call (what :class:`RayDistributor` sends when units take less than
        its `batch_seconds`), in order: (stats, None) per written shard, (None, error) per unit whose
        worker raised (the next unit still runs, as a single call would after an error). A worker that
        cannot start or a full / read-only disk raises for the whole call, like :meth:`run`."""
        out: list[tuple[ShardStats | None, str | None]] = []
        for unit in units:
            try:
                out.append((self.run(unit), None))
            except WorkerStartError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported per unit, retried by the driver
                if environment_error(exc) is not None:
                    raise
                out.append((None, _error_text(exc)))
        return out

    def verify(self, shards: list[int], fingerprint: str) -> list[tuple[int, ShardDone | None, str | None]]:
        """Read and check the markers of `shards` (sizes, sha256 of tar + Parquet) for the driver's
        resume, which only lists them. Needs no worker."""
        return check_shards(self.task.root, shards, fingerprint)

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


class _UnitFeed:
    """The units a run sends: retries first, then the source, read `lookahead` units ahead so the driver
    knows when the end is near (then it queues no second call on a busy actor: the last units go to idle
    actors instead of waiting behind a running shard)."""

    def __init__(self, source: Iterable[WorkUnit], lookahead: int) -> None:
        self.retry: deque[tuple[WorkUnit, int]] = deque()
        self._source = iter(source)
        self._ahead: deque[tuple[WorkUnit, int]] = deque()
        self._lookahead = max(1, lookahead)
        self._exhausted = False

    def _fill(self) -> None:
        while not self._exhausted and len(self._ahead) < self._lookahead:
            try:
                self._ahead.append((next(self._source), 1))
            except StopIteration:
                self._exhausted = True

    def pop(self) -> tuple[WorkUnit, int] | None:
        """The next (unit, attempt), or None when nothing is left."""
        if self.retry:
            return self.retry.popleft()
        self._fill()
        return self._ahead.popleft() if self._ahead else None

    def plenty(self) -> bool:
        """At least `lookahead` units are waiting."""
        self._fill()
        return len(self._ahead) + len(self.retry) >= self._lookahead


class RayDistributor:
    """A pool of Ray actors, each holding one worker; a dead actor's in-flight unit goes to another.

    Args:
        num_actors: actors in the pool (each loads the worker, e.g. the model, once).
        num_cpus: CPUs reserved per actor; fractional values are fine (default: cluster CPUs / actors,
            at most 1 on GPU actors). On small machines keep the total below the CPU count.
        num_gpus: GPUs per actor (0 on CPU; 1, or 0.5 to pack two actors per GPU).
        max_attempts: tries per unit (actor death or worker exception) before it is reported failed.
        max_replacements: actors that may be started to replace dead ones (default 2 x num_actors).
        spare_actors: warm spares started with the pool (each reserves `num_cpus`/`num_gpus` and builds
            the worker) that take no work until an actor dies: then one takes its place at once and a new
            spare starts in the background. Without spares a replacement starts in the background and
            its slot idles until it has built the worker (a model load on GPU actors).
        address: Ray address to connect to when Ray is not initialised yet (None: $RAY_ADDRESS, else a
            new local Ray; see :mod:`facegen.ray_session`).
        actor_options: extra ``ray.remote`` options (``runtime_env``, ``resources``, ...).
        owns_ray: this distributor shuts Ray down on ``close()`` even though its caller started it
            (:func:`make_distributor` hands over the session it started).
        batch_seconds: units that take an actor less than this (measured: the shards' own ``seconds``)
            are sent several per call, about this long together, at most `max_batch`: the driver's Ray
            cost per call (~1 ms of CPU) is then shared by the batch. Shards of a real model take seconds
            to minutes and always go one per call. A unit keeps its own attempts and outcome in a batch;
            when an actor dies mid-batch, the batch's shards that have their marker are done, the first
            one without is the one that was running (retried like a single call), the rest are re-sent.
        max_batch: most units per call (1 = never batch).
        queue_depth: calls in flight per actor. At 2 (default) an actor's next call is already queued on it
            while it runs the current one, so it never idles for the driver's round trip between shards
            (with 16 actors the driver answers them one after another). The last units of a run (fewer
            than one per actor left) go only to idle actors. When an actor dies, its calls are taken in
            the order they were sent, as one batch: the first unfinished unit was running, the rest
            never started.
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
        owns_ray: bool = False,
        spare_actors: int = 0,
        batch_seconds: float = 0.1,
        max_batch: int = 64,
        queue_depth: int = 2,
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
        # ref -> (actor, units, attempts): one unit per `run` call, several per `run_batch` call
        self._inflight: dict[Any, tuple[Any, list[WorkUnit], list[int]]] = {}
        self.batch_seconds = max(0.0, batch_seconds)
        self.max_batch = max(1, max_batch)
        self.queue_depth = max(1, queue_depth)
        self._calls: dict[Any, deque[Any]] = {}  # actor -> its calls in flight, in the order sent
        self.queued_calls = 0  # calls sent to an actor that was still running one (for benchmarks and tests)
        self._unit_seconds: float | None = None  # running mean of the shards' own seconds
        self._started_ray = owns_ray
        self._task: ShardTask | None = None
        self._task_ref: Any = None
        self._num_cpus = 0.0
        self._idle: deque[Any] = deque()
        self.spare_actors = max(0, spare_actors)
        self._spares: deque[Any] = deque()  # ready, holding no work
        self._starting: dict[Any, Any] = {}  # ready() ref -> actor still building its worker
        self._working = 0  # actors of the working pool (idle or busy), at most num_actors
        self._replacements = 0

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
        """Create the actor pool for `task` (each builds its worker) and its warm spares; with `wait`,
        block until all are ready. Optional: `run` starts the pool itself; call this to separate start-up
        from work."""
        ray = self._connect()
        self._num_cpus, _ = self._resources(ray)
        self._task = task
        self._task_ref = ray.put(task)
        self._replacements = 0
        self._idle = deque(self._new_actor(ray, self._task_ref, self._num_cpus) for _ in range(self.num_actors))
        self._working = self.num_actors
        self._spares = deque()
        self._starting = {}
        spares = [self._new_actor(ray, self._task_ref, self._num_cpus) for _ in range(self.spare_actors)]
        if wait:
            from ray.exceptions import RayTaskError

            try:
                ray.get([actor.ready.remote() for actor in [*self._idle, *spares]])
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, WorkerStartError):
                    raise start_failure(cause) from None
                raise
            self._spares.extend(spares)
        else:
            self._starting.update({actor.ready.remote(): actor for actor in spares})

    def _replace(self, ray: Any) -> None:
        """An actor of the working pool died: a ready spare takes its place now; a new actor (spare or
        replacement, whichever is short when it is ready) starts in the background, within the budget."""
        self._working -= 1
        if self._spares:
            self._idle.append(self._spares.popleft())
            self._working += 1
        if self._replacements < self.max_replacements:
            self._replacements += 1
            actor = self._new_actor(ray, self._task_ref, self._num_cpus)
            self._starting[actor.ready.remote()] = actor

    def _started(self, ray: Any, ref: Any) -> None:
        """A background actor finished building its worker: it joins the working pool if that is short,
        else it waits as a spare. One that died while starting is replaced (within the budget)."""
        from ray.exceptions import RayActorError, RayTaskError

        actor = self._starting.pop(ref)
        try:
            ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, WorkerStartError):
                raise start_failure(cause) from None
            raise
        except RayActorError as exc:
            log.warning("a new actor failed to start: %s", _error_text(exc).splitlines()[0])
            self._forget(ray, actor)
            self._working += 1  # _replace counts a working actor as lost
            self._replace(ray)
            return
        if self._working < self.num_actors:
            self._working += 1
            self._idle.append(actor)
        else:
            self._spares.append(actor)

    def verify(self, shards: Sequence[int], task: ShardTask) -> Iterator[tuple[int, ShardDone | None, str | None]]:
        """Check finished shards on the pool (markers read, files hashed by the actors, in batches of
        ``VERIFY_BATCH``) for :func:`~facegen.runner.run.verified_finished`: the driver only lists."""
        ray = self._connect()
        from ray.exceptions import RayActorError

        if self._task is not task:
            self.start(task, wait=False)
        batches = deque(list(shards[i : i + VERIFY_BATCH]) for i in range(0, len(shards), VERIFY_BATCH))
        inflight: dict[Any, tuple[Any, list[int]]] = {}
        while batches or inflight:
            while self._idle and batches:
                actor, batch = self._idle.popleft(), batches.popleft()
                inflight[actor.verify.remote(batch, task.fingerprint)] = (actor, batch)
            if not inflight and not self._starting:  # no actor left: check the rest here
                while batches:
                    yield from check_shards(task.root, batches.popleft(), task.fingerprint)
                break
            ready, _ = ray.wait([*inflight, *self._starting], num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in self._starting:
                    self._started(ray, ref)
                    continue
                actor, batch = inflight.pop(ref)
                try:
                    results = ray.get(ref)
                except RayActorError:
                    self._forget(ray, actor)
                    self._replace(ray)
                    batches.append(batch)
                    continue
                self._idle.append(actor)
                yield from results

    def _batch_size(self) -> int:
        """Units per call: 1 until a shard's time is known, then about `batch_seconds` of work."""
        if self.max_batch <= 1 or self._unit_seconds is None:
            return 1
        return max(1, min(self.max_batch, int(self.batch_seconds / max(self._unit_seconds, 1e-4))))

    def _observe(self, stats: ShardStats) -> None:
        seconds = float(stats.seconds)
        self._unit_seconds = seconds if self._unit_seconds is None else 0.9 * self._unit_seconds + 0.1 * seconds

    def run(self, units: Iterable[WorkUnit], task: ShardTask) -> Iterator[UnitOutcome]:
        ray = self._connect()
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        if self._task is not task:
            self.start(task, wait=False)
        idle = self._idle
        feed = _UnitFeed(units, lookahead=self.num_actors)

        def failed(unit: WorkUnit, attempt: int, error: str) -> UnitOutcome | None:
            """Retry `unit` (None) or, out of attempts, its failed outcome."""
            log.warning("shard %d attempt %d failed: %s", unit.shard, attempt, error)
            if attempt < self.max_attempts:
                feed.retry.append((unit, attempt + 1))
                return None
            return UnitOutcome(unit.shard, unit.num_rows, None, error, attempt)

        while True:
            while idle and self._send(idle[0], feed):
                idle.popleft()
            if self.queue_depth > 1:
                # the next call waits on the actor while it runs the current one: no driver round trip
                # between shards. Only while plenty is left, so the last units go to idle actors.
                for actor in [a for a, calls in self._calls.items() if len(calls) < self.queue_depth]:
                    while len(self._calls[actor]) < self.queue_depth and feed.plenty() and self._send(actor, feed):
                        pass
            if not self._inflight:
                item = feed.pop()
                if item is None:
                    break  # all done (spares still starting are not waited for)
                if not self._starting:
                    # Every actor is gone and the replacement budget is spent: fail what is left.
                    unit, attempt = item
                    yield UnitOutcome(unit.shard, unit.num_rows, None, "no actors left (all died)", attempt)
                    continue
                feed.retry.appendleft(item)  # waits for an actor that is starting
            for ref in self._ready(ray):
                if ref in self._starting:
                    self._started(ray, ref)  # joins the pool (or waits as a spare); live actors took retries meanwhile
                    continue
                if ref not in self._inflight:
                    continue  # a call of an actor whose death was handled with an earlier ref
                actor = self._inflight[ref][0]
                result, raised = None, None
                try:
                    result = ray.get(ref)
                except RayActorError as exc:  # the process died: crash, OOM kill, node loss
                    error = f"actor died: {_error_text(exc).splitlines()[0]}"
                    yield from self._actor_died(ray, task, actor, error, failed, feed.retry)
                    continue
                except (RayTaskError, GetTimeoutError) as exc:  # the worker raised; the actor lives on
                    raised = exc
                calls = self._calls[actor]
                calls.remove(ref)
                if not calls:
                    del self._calls[actor]
                    idle.append(actor)
                yield from self._call_outcomes(ref, result, raised, failed)

    def _send(self, actor: Any, feed: "_UnitFeed") -> bool:
        """Send `actor` its next call (one unit, or several short ones); False when nothing is left."""
        item = feed.pop()
        if item is None:
            return False
        batch = [item]
        size = self._batch_size()
        while len(batch) < size:
            more = feed.pop()
            if more is None:
                break
            batch.append(more)
        batch_units, attempts = [u for u, _ in batch], [a for _, a in batch]
        ref = actor.run.remote(batch_units[0]) if len(batch) == 1 else actor.run_batch.remote(batch_units)
        self._inflight[ref] = (actor, batch_units, attempts)
        calls = self._calls.setdefault(actor, deque())
        self.queued_calls += bool(calls)
        calls.append(ref)
        return True

    def _ready(self, ray: Any) -> list[Any]:
        """Every call or start that has finished (waiting up to 1 s for the first)."""
        pending = [*self._inflight, *self._starting]
        if not pending:
            return []
        ready, _ = ray.wait(pending, num_returns=1, timeout=1.0)
        if ready and len(pending) > 1:
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        return ready

    def _call_outcomes(self, ref: Any, result: Any, raised: BaseException | None, failed: Any) -> Iterator[UnitOutcome]:
        """The outcomes of a finished call (`result`, or the worker's exception `raised`); `ref` leaves
        the in-flight table."""
        _, batch_units, attempts = self._inflight.pop(ref)
        if raised is not None:
            cause = getattr(raised, "cause", None)
            if isinstance(cause, WorkerStartError):
                raise start_failure(cause) from None  # every call would fail the same way
            env = environment_error(cause) if cause is not None else None
            if env is not None:
                raise env from None  # a full or read-only disk: retrying cannot help
            error = _error_text(raised).splitlines()[-1] if str(raised) else type(raised).__name__
            for unit, attempt in zip(batch_units, attempts):
                outcome = failed(unit, attempt, error)
                if outcome is not None:
                    yield outcome
            return
        results = [(result, None)] if len(batch_units) == 1 else result
        for unit, attempt, (stats, error) in zip(batch_units, attempts, results):
            if stats is not None:
                self._observe(stats)
                yield UnitOutcome(unit.shard, unit.num_rows, stats, None, attempt)
            else:
                outcome = failed(unit, attempt, error or "unknown error")
                if outcome is not None:
                    yield outcome

    def _actor_died(
        self, ray: Any, task: ShardTask, actor: Any, error: str, failed: Any, retry: deque[tuple[WorkUnit, int]]
    ) -> Iterator[UnitOutcome]:
        """`actor` died with calls queued on it. Calls run in the order they were sent: those that finished
        before the death are reported as usual; the units of the others go, in order, to
        :meth:`_died_mid_batch` (done if their marker is there, the first without one was running, the rest
        never started)."""
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        calls = list(self._calls.pop(actor, ()))
        ray.wait(calls, num_returns=len(calls), timeout=10.0)  # a dead actor's calls all resolve promptly
        self._forget(ray, actor)
        self._replace(ray)  # a warm spare takes over at once; a new one starts in the background
        lost_units: list[WorkUnit] = []
        lost_attempts: list[int] = []
        for ref in calls:
            _, batch_units, attempts = self._inflight[ref]
            result, raised = None, None
            try:
                result = ray.get(ref, timeout=0)
            except (RayActorError, GetTimeoutError):
                del self._inflight[ref]
                lost_units += batch_units
                lost_attempts += attempts
                continue
            except RayTaskError as exc:  # the worker raised before the death: reported as usual
                raised = exc
            yield from self._call_outcomes(ref, result, raised, failed)
        if lost_units:
            yield from self._died_mid_batch(task, lost_units, lost_attempts, error, failed, retry)

    def _died_mid_batch(
        self,
        task: ShardTask,
        units: list[WorkUnit],
        attempts: list[int],
        error: str,
        failed: Any,
        retry: deque[tuple[WorkUnit, int]],
    ) -> Iterator[UnitOutcome]:
        """The actor running `units` (in order) died. A single unit is retried (or failed). Of a batch,
        shards whose marker is there were finished (checked like a resume, on this rare path only), the
        first without one was running when the actor died (its attempt counts), the rest never started
        (re-sent as they were)."""
        running = 0
        if len(units) > 1:
            while running < len(units):
                stats, _ = check_shard(task.root, units[running].shard, task.fingerprint)
                if stats is None:
                    break
                yield UnitOutcome(units[running].shard, units[running].num_rows, stats, None, attempts[running])
                running += 1
            if running == len(units):
                return  # every shard was written; the actor died after the last one
            retry.extendleft(reversed(list(zip(units[running + 1 :], attempts[running + 1 :]))))
        unit = units[running]
        remove_temporaries(task.root, unit.shard)  # nothing else writes this shard now
        outcome = failed(unit, attempts[running], error)
        if outcome is not None:
            yield outcome

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
        self._calls.clear()
        self._spares.clear()
        self._starting.clear()
        self._task = None
        if self._inflight:
            try:
                ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=3.0)
            except Exception:  # noqa: BLE001
                log.debug("waiting for killed actors: %s", traceback.format_exc())
            self._inflight.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def make_distributor(
    num_actors: int | None = None,
    *,
    in_process: bool = False,
    address: str | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    max_cpus_per_actor: float | None = None,
    max_attempts: int | None = None,
    spare_actors: int = 0,
) -> tuple[Distributor, int | None]:
    """The distributor of every shard command (``balance``, ``extract``, ``verify``) and the torch thread
    count each CPU worker should use (None on GPU actors and in-process).

    Ray is joined or started by the one policy (:func:`facegen.ray_session.connect_ray`), then sized from
    what the cluster has: `gpus_per_actor` None = 1 when the cluster has GPUs, else 0 (pass 0 for
    CPU-only work such as face analysis); `num_actors` None = one per GPU share on GPU clusters, else 1;
    `cpus_per_actor` None = the cluster's CPUs split evenly over the actors, at most `max_cpus_per_actor`
    (1 on GPU actors; face analysis caps its CPU actors at 1 too), so the pool always fits.
    `max_attempts` None = the distributor's own default. `spare_actors`: warm spares beside the pool (see
    :class:`RayDistributor`); with GPUs and no `num_actors`, the pool leaves them their GPUs. A Ray session started here belongs to the
    distributor: its ``close()`` shuts it down. Invalid sizes are one-line errors naming the option.
    """
    retries = {} if max_attempts is None else {"max_attempts": max_attempts}
    if spare_actors < 0:
        raise FacegenError("must be >= 0", where="--spare-actors")
    if in_process:
        if spare_actors:
            raise FacegenError("spare actors need Ray; drop --in-process or --spare-actors", where="--spare-actors")
        return InProcessDistributor(**retries), None
    if gpus_per_actor is not None and gpus_per_actor < 0:
        raise FacegenError("must be >= 0", where="--gpus-per-actor")
    if cpus_per_actor is not None and cpus_per_actor <= 0:
        raise FacegenError("must be > 0 (fractions such as 0.5 are fine)", where="--cpus-per-actor")
    if num_actors is not None and num_actors < 1:
        raise FacegenError("must be >= 1", where="--num-actors")
    import ray

    started = connect_ray(address)
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    gpus_per_actor = gpus_per_actor if gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if started and not address and gpus_per_actor > gpus:
        ray.shutdown()
        raise FacegenError(
            f"asks for {gpus_per_actor:g} GPU(s) per actor but this machine has {gpus:g}; use --gpus-per-actor 0",
            where="--gpus-per-actor",
        )
    num_actors = num_actors or (max(1, int(gpus // gpus_per_actor) - spare_actors) if gpus_per_actor > 0 else 1)
    if cpus_per_actor is None:
        cap = max_cpus_per_actor if max_cpus_per_actor is not None else (1.0 if gpus_per_actor > 0 else None)
        share = cpus / (num_actors + spare_actors)
        cpus_per_actor = share if cap is None else min(cap, share)
    threads = max(1, int(cpus_per_actor)) if gpus_per_actor == 0 else None
    dist = RayDistributor(
        num_actors,
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        address=address,
        owns_ray=started,
        spare_actors=spare_actors,
        **retries,
    )
    return dist, threads
