"""Generic shard machinery shared by ``facegen balance``, ``extract`` and ``verify``.

Flow (img2dataset-style)::

    rows (pa.Table / Parquet) --units--> WorkUnit(shard, rows) --distributor--> actor: worker.process(unit)
        --> Sample(key, files, label) | SampleFailure(key, error) --write_shard--> DIR/shards/NNNNNN.{tar,parquet}
        --> NNNNNN_stats.json (written LAST: the done-marker)

Public API
----------
Units (``facegen.runner.units``):
    ``WorkUnit(shard: int, rows: pa.Table)``; ``.num_rows``.
    ``units_from_table(table, shard_column="shard") -> list[WorkUnit]`` (shard column sorted/contiguous).
    ``units_from_parquet(url, shard_column="shard", skip=()) -> Iterator[WorkUnit]`` (streams row groups,
    never reads groups of shards in `skip`). ``assign_shards(table, rows_per_shard) -> pa.Table`` adds a
    ``shard`` column in contiguous blocks (e.g. for an input file list).
    ``rows_per_shard_in_parquet(url) -> dict[int, int]``.

Samples (``facegen.io.samples``, re-exported here):
    ``Sample(key: str, files: dict[str, bytes], label: dict)`` — `files` maps a WebDataset extension
    without leading dot (``"jpg"``, ``"json"``, ``"cls"``, ``"mask.png"``) to bytes; `label` is the sample's row
    in the shard Parquet (``key``/``shard`` filled in if absent). Keys: ``[A-Za-z0-9_-]+``, unique per shard.
    ``SampleFailure(key: str, error: str)`` — a sample that could not be made; recorded in the shard
    stats (``failed`` list) and in the run's ``failures.parquet`` by ``finalize``-style code, never dropped.

Worker protocol (``facegen.runner.task``):
    any object with ``process(unit: WorkUnit) -> Iterable[Sample | SampleFailure]``, built ONCE per actor
    by a picklable zero-arg ``worker_factory`` (a class or ``functools.partial(MyWorker, model_dir=...)``);
    load models in ``__init__``. Yield in a deterministic order. An exception escaping ``process`` fails the
    shard attempt (retried, bounded); per-sample errors should be yielded as ``SampleFailure``.

Task + run (``facegen.runner.task``, ``facegen.runner.run``):
    ``ShardTask(worker_factory, output_url: str, fingerprint: str, label_schema: pa.Schema | None = None,
    extra_stats: dict = {})`` — `output_url` is a local path or fsspec URL (``s3://...``); `fingerprint`
    identifies the run (stats with another fingerprint are not trusted on resume); `extra_stats` is copied
    into every stats file (model/manifest hashes).
    ``run_shards(units, task, distributor=None, *, total_rows=None, progress=True, description=...,
    finished=None) -> RunSummary`` resumes (skips shards whose stats match AND whose tar + Parquet still hash
    to them: ``verified_finished(root, fingerprint) -> (finished, damaged)`` deletes damaged shards so they
    are redone), removes temporaries, shows a tqdm bar (img/s, ETA), and on Ctrl-C kills in-flight work,
    removes temporaries, keeps finished shards, re-raises KeyboardInterrupt. A full / read-only disk in a
    worker stops the run at once (no retries). ``RunSummary``: ``done: dict[int, ShardStats]``, ``resumed:
    list[int]``, ``failed: dict[int, str]``, ``retried: dict[int, int]``, ``damaged: dict[int, str]``,
    ``seconds``, ``new_samples``, ``samples``, ``sample_failures``, ``ok``.

Distributors (``facegen.runner.distributors``):
    ``InProcessDistributor(max_attempts=2)`` — one worker in this process (debugging, ``memory://``).
    ``RayDistributor(num_actors=1, *, num_cpus=None, num_gpus=0.0, max_attempts=3, max_replacements=None,
    address=None, actor_options=None)`` — actor pool; uses the current Ray session or starts one
    (``address`` to join a cluster; actor logs stay in Ray, not the terminal). Fractional ``num_cpus`` is
    fine (2-core machines: keep the total under the CPU count). A dead actor's shard is retried on a
    replacement actor; after ``max_attempts`` the shard is reported failed. ``start(task, wait=True)`` builds
    the pool up front (optional; ``run`` does it lazily). ``make_distributor(num_actors=None, *, in_process=False,
    address=None, gpus_per_actor=None, cpus_per_actor=None, max_cpus_per_actor=None, max_attempts=None)
    -> (Distributor, torch threads)``:
    the one sizing policy of balance / extract / verify. ``connect_ray(address=None) -> bool``
    (``facegen.ray_session``, the one connection policy, shared with training): joins `address`, else
    $RAY_ADDRESS, else starts a new private local Ray (True if it started one). Env ``FACEGEN_INJECT_ACTOR_CRASH=
    /path/marker``: the first actor to create the marker dies mid-shard (fault drills and tests).
    An actor whose worker cannot be built (model missing on its node, ...) raises ``WorkerStartError``; the
    driver turns it into one FacegenError with the real cause. ``facegen.runner.drills.pause_point(name)``
    (env ``FACEGEN_DRILL_PAUSE=name:/marker``): the driver pauses at a named moment (tests deliver signals).
    ``facegen.runner.simulated.SimulatedWorker(seconds_per_shard, fail_keys, crash_shards, crash_dir,
    fail_shards)``: a model-free worker with injectable faults.

Balance (``facegen.runner.balance``; the generation worker is ``facegen.runner.generation.GenerationWorker``):
    ``run_balance(BalanceConfig(manifest, out, distributor="ray"|"in-process", address=None, num_actors=None,
    gpus_per_actor=None, cpus_per_actor=None, max_attempts=3, overwrite=False, progress=True, device=None,
    dtype=None, reports=True)) -> BalanceResult(out, plan_rows, samples, sample_failures, failed_shards, run,
    summary, complete)``. Before anything is written: ``--out`` checked (not a file, no ``#``/``?``), the
    model folder read in the driver, and the dataset's writer lock taken (``facegen.io.lock.WriterLock``:
    one writer per DIR; flock locally, a renewed lease object on object stores). OSErrors of the machine
    (read-only, full disk, permissions) become one-line FacegenErrors (``facegen.errors.environment_error``).
    Finalize writes labels, rejects, failures, reports, then ``summary.json`` LAST, on every run. Label columns: ``facegen.labels.GENERATED_SCHEMA`` (the plan's
    values renamed ``target_*``, how each image was made, and the in-loop measurements). With a manifest
    ``verify:`` section the actors measure each batch after decoding (``facegen.runner.verification``:
    ``resolve_verify`` in the driver, ``LoopMeasurer`` in the worker) and yield ``RejectedSample`` for images
    outside tolerance (rows in ``NNNNNN_rejects.parquet``); mode regenerate runs further rounds
    (``facegen.runner.rounds``: keys ``KEY_rNN``, seeds from (plan index, round), ``rounds/round_RR.parquet``)
    on the same actor pool (``run_shards(..., close=False)``); ``facegen.runner.bins`` counts target /
    planned / written / accepted / achieved (measured) / shortfall per bin for summary.json.

Shard files (``facegen.io.shards``):
    ``write_shard(root: Location, shard, samples, *, fingerprint, label_schema=None, extra=None) -> ShardStats``,
    ``ShardStats`` (count, failures, failed, seconds, fingerprint, tar/parquet sha256 + bytes, first/last key,
    host, pid, extra), ``ShardPaths(shard).{tar,parquet,stats}``, ``completed_shards(root, fingerprint)``,
    ``all_shard_stats(root)``, ``read_shard_stats(root, shard)``, ``remove_temporaries(root)``.
    ``facegen.io.Location(url)``: fsspec directory (``open``, ``rename``, ``write_bytes_atomic``, ``list``...).

Minimal example::

    from facegen.runner import ShardTask, RayDistributor, run_shards, units_from_table, Sample

    class Upper:
        def process(self, unit):
            for row in unit.rows.to_pylist():
                yield Sample(row["key"], {"txt": row["text"].upper().encode()}, {"n": len(row["text"])})

    task = ShardTask(Upper, "out/ds", fingerprint="v1")
    summary = run_shards(units_from_table(table), task, RayDistributor(num_actors=2, num_cpus=0.5))
"""

from facegen.io.samples import Sample, SampleFailure
from facegen.io.shards import ShardStats
from facegen.ray_session import connect_ray
from facegen.runner.distributors import CRASH_ENV, Distributor, InProcessDistributor, RayDistributor, make_distributor
from facegen.runner.run import RunSummary, run_shards
from facegen.runner.task import ShardTask, UnitOutcome, Worker, WorkerFactory
from facegen.runner.units import (
    WorkUnit,
    assign_shards,
    rows_per_shard_in_parquet,
    units_from_parquet,
    units_from_table,
)

__all__ = [
    "CRASH_ENV",
    "Distributor",
    "InProcessDistributor",
    "RayDistributor",
    "RunSummary",
    "Sample",
    "SampleFailure",
    "ShardStats",
    "ShardTask",
    "UnitOutcome",
    "WorkUnit",
    "Worker",
    "WorkerFactory",
    "assign_shards",
    "connect_ray",
    "make_distributor",
    "rows_per_shard_in_parquet",
    "run_shards",
    "units_from_parquet",
    "units_from_table",
]
