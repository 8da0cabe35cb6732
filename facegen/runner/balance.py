"""`facegen balance` as a library call: plan -> generate shards on Ray (measuring in the loop, rounds of
regeneration) -> finalize.

    result = run_balance(BalanceConfig(manifest="manifests/demo.yaml", out="out/demo"))

With a manifest `verify:` section the actors measure every image right after decoding; in mode
regenerate the plan rows of rejected images are made again in further rounds (`facegen.runner.rounds`)
on the same actor pool until every row has an accepted image or the budget is spent.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from facegen.errors import FacegenError, environment_error
from facegen.io.fs import TEMP_MARK, Location
from facegen.io.lock import (
    DATASET_FORMAT,
    LOCK_NAME,
    Lock,
    WriterLock,
    abandoned_before_shards,
    changed_only,
    check_no_writer,
    read_lock,
    write_lock,
)
from facegen.io.shards import SHARDS_DIR
from facegen.runner.distributors import Distributor, make_distributor
from facegen.runner.drills import pause_point
from facegen.runner.finalize import (
    FAILURES_NAME,
    LABELS_NAME,
    REJECTS_NAME,
    SUMMARY_COLUMNS,
    SUMMARY_NAME,
    read_labels,
    write_failures,
    write_labels,
    write_rejects,
    write_summary,
)
from facegen.labels import GENERATED_SCHEMA
from facegen.runner.bins import bin_summary
from facegen.runner.generation import GenerationWorker
from facegen.runner.rounds import ROUNDS_DIR, make_round_plan, round_plan_name, rows_per_round_shard, still_open
from facegen.runner.run import RunSummary, run_plan, verified_finished
from facegen.runner.task import ShardTask
from facegen.runner.verification import VerifySettings, resolve_verify, verification_summary

log = logging.getLogger(__name__)
#: `verify:` keys that only bound how many rounds / images regenerate may spend: raising them continues a run.
BUDGET_KEYS = ("max_rounds", "max_total_factor")

PLAN_NAME = "plan.parquet"
# plan.parquet last: its presence means the plan is whole.
PLAN_FILES = ("identities.npy", "plan_summary.json", PLAN_NAME)
REPORT_NAME = "report.png"
PREVIEW_NAME = "preview.jpg"
#: Everything `--overwrite` may delete (never anything else in DIR).
OWNED = (SHARDS_DIR, ROUNDS_DIR, *PLAN_FILES, LABELS_NAME, REJECTS_NAME, FAILURES_NAME, SUMMARY_NAME, REPORT_NAME, PREVIEW_NAME, LOCK_NAME)


@dataclass
class BalanceConfig:
    """Options of `facegen balance` (validated by the CLI; defaults suit a laptop)."""

    manifest: str | Path
    out: str
    model: str | None = None  # overrides the manifest's `model:` (e.g. where cluster nodes keep the weights)
    distributor: Literal["ray", "in-process"] = "ray"
    address: str | None = None
    num_actors: int | None = None  # None: GPUs / gpus_per_actor on GPU clusters, 1 on CPU
    gpus_per_actor: float | None = None  # None: 1 if the cluster has GPUs, else 0
    cpus_per_actor: float | None = None  # None: CPUs / actors (<= 1 per GPU actor)
    max_attempts: int = 3
    spare_actors: int = 0  # warm spares that take a crashed actor's place at once (each reserves an actor's resources)
    overwrite: bool = False
    progress: bool = True
    device: str | None = None
    dtype: str | None = None
    reports: bool = True
    #: Turn SIGTERM (``ray job stop``, schedulers) into KeyboardInterrupt: the same clean stop as Ctrl-C,
    #: from the first moment of the run (Ray's start-up holds both signals until it can stop cleanly).
    sigterm_as_interrupt: bool = False


@dataclass
class BalanceResult:
    out: str
    plan_rows: int
    samples: int
    sample_failures: int
    failed_shards: dict[int, str]
    run: RunSummary
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every shard of every round written and no sample failed. Plan rows whose last image was
        rejected (summary ``verification.dropped``: a reported shortfall) do not make a run incomplete."""
        dropped = int(self.summary.get("verification", {}).get("dropped", 0))
        return not self.failed_shards and self.sample_failures == 0 and self.samples + dropped == self.plan_rows


def _load(manifest_path: str | Path, model_override: str | None = None) -> tuple[Any, Path, str, Lock, VerifySettings]:
    from facegen.manifest import load_manifest, resolve_model_dir
    from facegen.model.loading import model_hash

    manifest = load_manifest(manifest_path)
    if model_override:
        model = model_override if model_override == "tiny" else str(Path(model_override).expanduser().resolve())
        manifest = manifest.model_copy(update={"model": model})
    model_dir = Path(resolve_model_dir(manifest))
    mhash = model_hash(model_dir)
    resolved = manifest.model_dump(mode="json")
    if manifest.model != "tiny":
        resolved["model"] = {"hash": mhash}  # where the weights live does not change the samples
    verify = resolve_verify(manifest, model_dir)  # `auto` -> concrete estimators, weights checked (one line)
    if "verify" in resolved:
        # the estimators that judge the images are part of the run: a later run that finds other weights
        # under `auto` is a different dataset, never silently mixed into this one
        resolved["verify"]["estimators"] = verify.estimators()
        if verify.measures:
            resolved["verify"]["estimator_weights"] = verify.estimator_weights
        resolved["verify"].pop("models_dir", None)
    lock = Lock.create(
        resolved,
        source=str(manifest_path),
        source_bytes=Path(manifest_path).read_bytes(),
        model={"dir": str(model_dir), "name": manifest.model, "hash": mhash},
    )
    return manifest, model_dir, mhash, lock, verify


def prepare_output(root: Location, lock: Lock, overwrite: bool) -> bool:
    """Check DIR against `lock`; returns True when resuming an earlier run of the same manifest."""
    existing = read_lock(root)
    if overwrite or abandoned_before_shards(root, existing, lock.fingerprint, SHARDS_DIR):  # the latter: no shard to lose
        for rel in OWNED:
            if rel in (SHARDS_DIR, ROUNDS_DIR):
                root.remove_tree(rel)
            else:
                root.remove(rel)
        existing = None
    elif existing is not None and existing.get("fingerprint") != lock.fingerprint and existing.get("facegen_dataset") != DATASET_FORMAT:
        raise FacegenError(
            f"holds a dataset in facegen format {existing.get('facegen_dataset')} (planned labels under bare names, "
            f"nothing measured); this facegen writes format {DATASET_FORMAT}: pass --overwrite to regenerate it or "
            "choose another --out",
            where=root.url,
        )
    elif existing is not None and existing.get("fingerprint") != lock.fingerprint and (budget := changed_only(existing, lock, "verify", BUDGET_KEYS)):
        # only regenerate's budget changed: raising it continues the rounds already made (a run that
        # reported a shortfall can be topped up); lowering it cannot un-make them
        changes = ", ".join(f"verify.{k} {a} -> {b}" for k, (a, b) in budget.items())
        if any(b < a for a, b in budget.values()):
            raise FacegenError(f"holds a dataset made with a larger regenerate budget ({changes}); a budget can be "
                               "raised to continue a run, not lowered: pass --overwrite to start over or choose another --out",
                               where=root.url)  # fmt: skip
        log.warning("%s: regenerate budget raised (%s); continuing from the rounds already made", root.url, changes)
        lock.shard_fingerprint = existing.get("shard_fingerprint") or existing["fingerprint"]
    elif existing is not None and existing.get("fingerprint") != lock.fingerprint:
        raise FacegenError(
            f"holds a dataset of a different manifest or model ({existing.get('manifest_source', '?')}); "
            "pass --overwrite to start over or choose another --out",
            where=root.url,
        )
    elif existing is None and any(name in OWNED for name in root.list()):
        raise FacegenError(
            "has dataset files but no manifest.lock.yaml; pass --overwrite to start over or choose another --out",
            where=root.url,
        )
    elif existing is not None:  # the same run again: its shards keep the fingerprint they were made under
        lock.shard_fingerprint = existing.get("shard_fingerprint") or lock.fingerprint
    write_lock(root, lock)
    return existing is not None


def ensure_plan(root: Location, manifest: Any) -> int:
    """Write DIR/plan.parquet (+ identities.npy) unless a whole plan is already there; returns its rows."""
    if not root.exists(PLAN_NAME):
        from facegen.manifest import write_plan

        staging = Path(tempfile.mkdtemp(prefix="facegen-plan-"))
        try:
            write_plan(manifest, staging)
            for name in PLAN_FILES:
                root.write_bytes_atomic(name, (staging / name).read_bytes())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    with root.open(PLAN_NAME, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


#: Characters that URL parsers (webdataset, urllib, fsspec chaining) treat as syntax in a local path.
URL_SYNTAX = ("#", "?")


def check_output(out: str) -> Location:
    """Refuse an unusable ``--out`` before anything is loaded or written: a path that URL readers would
    cut at ``#`` / ``?``, or an existing file (or a file among its parents). One-line FacegenError."""
    root = Location(out)
    if "://" not in out or root.is_local:
        bad = [c for c in URL_SYNTAX if c in root.path()]
        if bad:
            raise FacegenError(
                f"contains {' and '.join(repr(c) for c in bad)}, which webdataset and other URL readers take for "
                "URL syntax (they would silently read another path); choose a path without '#' or '?'",
                where=out,
            )
        import os

        path = root.path()
        probe = path
        while probe and not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if probe and os.path.exists(probe) and not os.path.isdir(probe):
            what = "is a file" if probe == path else f"has a file in its path ({probe})"
            raise FacegenError(f"{what}, not a folder; choose a folder path for --out", where=out)
    return root


def run_balance(cfg: BalanceConfig) -> BalanceResult:
    """Plan, generate (resuming finished shards, redoing damaged ones) and finalize a dataset under
    ``cfg.out``, as the one writer of that folder (see :class:`~facegen.io.lock.WriterLock`)."""
    if cfg.sigterm_as_interrupt and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    root = check_output(cfg.out)
    try:
        check_no_writer(root)  # a run in progress: refuse before the (slow) model hash
        manifest, model_dir, mhash, lock, verify = _load(cfg.manifest, cfg.model)
        _check_model_folder(model_dir)
        with WriterLock(root):  # taken before anything is written, held until the end
            return _run_locked(cfg, root, manifest, model_dir, mhash, lock, verify)
    except OSError as exc:
        env = environment_error(exc, root.url)
        if env is None:
            raise
        raise env from None


def _check_model_folder(model_dir: Path) -> None:
    """The driver reads the model folder's layout before any actor starts (a broken folder is one line
    naming the file, not "actors died")."""
    from facegen.model.folder import read_model_info

    try:
        read_model_info(model_dir)
    except FacegenError as exc:
        if ";" in str(exc):
            raise
        raise FacegenError(f"{exc}; the model folder is incomplete: re-create it (`facegen model init`) or point "
                           "--model / the manifest's `model:` at a complete one") from None


def _run_locked(
    cfg: BalanceConfig, root: Location, manifest: Any, model_dir: Path, mhash: str, lock: Lock, verify: VerifySettings | None = None
) -> BalanceResult:
    resumed = prepare_output(root, lock, cfg.overwrite)
    root.remove(SUMMARY_NAME)  # written again LAST by finalize: a summary always describes the latest run
    pause_point("plan")
    plan_rows = ensure_plan(root, manifest)
    log.info("%s %s: %d planned samples", "resuming" if resumed else "starting", root.url, plan_rows)
    pause_point("distribute")
    distributor, threads = make_distributor(
        cfg.num_actors,
        in_process=cfg.distributor == "in-process",
        address=cfg.address,
        gpus_per_actor=cfg.gpus_per_actor,
        cpus_per_actor=cfg.cpus_per_actor,
        max_attempts=cfg.max_attempts,
        spare_actors=cfg.spare_actors,
    )
    try:
        return _generate(cfg, root, manifest, model_dir, mhash, lock, plan_rows, distributor, threads, None, verify)
    finally:
        distributor.close()  # also shuts down a Ray session make_distributor started


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _generate(
    cfg: BalanceConfig,
    root: Location,
    manifest: Any,
    model_dir: Path,
    mhash: str,
    lock: Lock,
    plan_rows: int,
    distributor: Distributor,
    threads: int | None,
    finished: tuple[dict[int, Any], dict[int, str]] | None = None,
    verify: VerifySettings | None = None,
) -> BalanceResult:
    verify = verify or VerifySettings()
    worker_factory = functools.partial(
        GenerationWorker,
        str(model_dir),
        root.url,
        manifest,
        device=cfg.device,
        dtype=cfg.dtype,
        threads=threads,
        expected_model_hash=mhash,
        verify=verify,
    )
    task = ShardTask(
        worker_factory,
        root.url,
        lock.shard_fingerprint,
        label_schema=GENERATED_SCHEMA,
        extra_stats={"model_hash": mhash, "manifest_sha256": lock.manifest_sha256},
    )
    # Resume: the driver lists the markers; the actors read them and re-hash each shard's files (damaged
    # shards are deleted here and redone like unfinished ones).
    finished = finished if finished is not None else verified_finished(root, lock.shard_fingerprint, distributor, task)
    spp = manifest.output.samples_per_shard
    round0_shards = -(-plan_rows // spp)
    run = RunSummary(damaged=dict(finished[1]))
    rounds_run = 0
    plan_url, shards, rows = root.url_of(PLAN_NAME), range(0, round0_shards), plan_rows
    generated = plan_rows
    budget = int(math.floor(verify.max_total_factor * plan_rows + 1e-9))
    for round_ in range(verify.rounds):
        if round_ > 0:
            # the previous round's rejects decide this round's rows: written once, reused on resume
            if any(s in run.failed or s not in run.done for s in shards):
                break  # a shard of the previous round failed: its rejects are unknown (re-run resumes)
            plan_url, shards, rows = _round_plan(root, manifest, run, shards, round_, round0_shards, budget - generated)
            if rows == 0:
                break
            generated += rows
            pause_point(f"round-{round_}")
        rounds_run += 1
        _run_round(cfg, root, task, distributor, run, finished[0], plan_url, shards, rows, round_, close=round_ == verify.rounds - 1)
    return finalize(root, manifest, lock, plan_rows, run, reports=cfg.reports, verify=verify, rounds_run=rounds_run)


def _run_round(
    cfg: BalanceConfig,
    root: Location,
    task: ShardTask,
    distributor: Distributor,
    run: RunSummary,
    finished: dict[int, Any],
    plan_url: str,
    shards: range,
    rows: int,
    round_: int,
    *,
    close: bool,
) -> None:
    """Generate the shards of one round (resuming finished ones) and add the result to `run`."""
    mine = {s: st for s, st in finished.items() if s in shards}
    description = "balance" if round_ == 0 else f"balance round {round_}"
    result = run_plan(plan_url, task, distributor, total_rows=rows, progress=cfg.progress, description=description,
                      finished=(mine, {}), close=close)  # fmt: skip
    run.merge(result)


def _round_plan(
    root: Location, manifest: Any, run: RunSummary, previous: range, round_: int, round0_shards: int, budget_left: int
) -> tuple[str, range, int]:
    """(URL, shard range, rows) of round `round_`: the plan rows whose latest image was rejected (the
    previous round's rejects and those an earlier round's budget left out), as many as `budget_left`
    allows. Read back when an earlier run already wrote it (resume); else written now. A round with no
    rows is never written, so a raised budget finds it still to be planned."""
    rel = round_plan_name(round_)
    for name in root.list(ROUNDS_DIR):  # leftovers of a write that was killed
        if TEMP_MARK in name:
            root.remove(f"{ROUNDS_DIR}/{name}")
    if root.exists(rel) and _plan_rows(root, rel) == 0:
        root.remove(rel)  # an empty round (written by older versions when the budget ran out): plan it again
    if not root.exists(rel):
        if budget_left <= 0:
            return root.url_of(rel), range(previous.stop, previous.stop), 0
        from facegen.runner.finalize import collect_rejects

        earlier = {s: st for s, st in run.done.items() if s < previous.stop}
        rejected = still_open(collect_rejects(root, earlier, GENERATED_SCHEMA), _latest_attempts(root, round_))
        limit = min(rejected.num_rows, budget_left)
        if limit == 0:
            return root.url_of(rel), range(previous.stop, previous.stop), 0
        per_shard = rows_per_round_shard(limit, round0_shards, manifest.output.samples_per_shard, manifest.sampler.batch_size)
        table = make_round_plan(rejected, round_, seed=manifest.seed, first_shard=previous.stop, rows_per_shard=per_shard, limit=limit)
        root.makedirs(ROUNDS_DIR)
        root.write_parquet_atomic(rel, table, row_group_size=per_shard)  # row groups never straddle shards
    with root.open(rel, "rb") as f:
        shard_col = pq.read_table(f, columns=["shard"]).column("shard").to_numpy()
    if len(shard_col) == 0:
        return root.url_of(rel), range(previous.stop, previous.stop), 0
    return root.url_of(rel), range(int(shard_col.min()), int(shard_col.max()) + 1), len(shard_col)


def _plan_rows(root: Location, rel: str) -> int:
    with root.open(rel, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def _latest_attempts(root: Location, round_: int) -> dict[int, int]:
    """Plan index -> the last round before `round_` that made it again (rows made only in round 0 absent)."""
    latest: dict[int, int] = {}
    for r in range(1, round_):
        rel = round_plan_name(r)
        if root.exists(rel):
            with root.open(rel, "rb") as f:
                latest.update(dict.fromkeys(pq.read_table(f, columns=["index"]).column("index").to_pylist(), r))
    return latest


def finalize(
    root: Location,
    manifest: Any,
    lock: Lock,
    plan_rows: int,
    run: RunSummary,
    reports: bool = True,
    verify: VerifySettings | None = None,
    rounds_run: int = 1,
) -> BalanceResult:
    """labels.parquet, rejects.parquet, failures.parquet, the reports, then summary.json LAST (so a
    summary means the rest is there). Runs on every (re-)run, resumed ones included. A report that cannot
    be drawn is a warning recorded in the summary, never a crash of a dataset whose shards are complete."""
    verify = verify or VerifySettings()
    pause_point("finalize")
    write_labels(root, run.done, GENERATED_SCHEMA)  # streamed: the rows are not held here
    # what the summaries (and the reports) read back: a few columns, never the probability vectors
    labels = read_labels(root, None if reports else SUMMARY_COLUMNS)
    rejects = write_rejects(root, run.done, GENERATED_SCHEMA)
    failures = write_failures(root, run.done, run.failed)
    with root.open(PLAN_NAME, "rb") as f:
        plan = pq.read_table(f, columns=["emotion", "controls", "yaw", "pitch", "roll", "valence", "arousal"])
    new_seconds = run.new_seconds  # aggregated as shards finished (`s not in run.resumed` was O(n^2))
    report_errors: dict[str, str] = {}
    if reports:
        from facegen.report import write_preview, write_report

        for name, write in ((REPORT_NAME, lambda: write_report(root, labels, plan, manifest)),
                            (PREVIEW_NAME, lambda: write_preview(root, labels))):
            try:
                write()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - reports are a view; the data stays complete
                env = environment_error(exc, root.url_of(name))
                if env is not None:
                    raise env from None
                report_errors[name] = f"{type(exc).__name__}: {exc}"
                log.warning("%s could not be written (%s); the dataset itself is unaffected", name, report_errors[name])
    else:  # a stale report of an earlier run must not pass for this one's
        for name in (REPORT_NAME, PREVIEW_NAME):
            root.remove(name)
    failed_keys = [k for k in failures.column("key").to_pylist() if k is not None]
    verification = verification_summary(verify, labels, rejects, plan_rows=plan_rows, failed_keys=failed_keys, rounds_run=rounds_run)
    plan_summary = json.loads(root.read_bytes("plan_summary.json")) if root.exists("plan_summary.json") else {}
    measured = {"pose": verify.measures and verify.pose != "none", "emotion": verify.measures and verify.emotion != "none"}
    summary: dict[str, Any] = {
        "dataset": root.url,
        "complete": False,
        "plan_rows": plan_rows,
        "samples": labels.num_rows,
        "sample_failures": run.sample_failures,
        "shards_total": len(run.done) + len(run.failed),
        "shards_done": len(run.done),
        "failed_shards": {str(k): v for k, v in sorted(run.failed.items())},
        "resumed_shards": len(run.resumed),
        "damaged_shards_redone": {str(k): v for k, v in sorted(run.damaged.items())},
        "retried_shards": {str(k): v for k, v in sorted(run.retried.items())},
        "new_samples": run.new_samples,
        "new_images_generated": run.new_generated,
        "wall_seconds": round(run.seconds, 3),
        # generated images (kept + rejected) per second: what the actors did
        "images_per_second": round(run.new_generated / run.seconds, 3) if run.seconds > 0 and run.new_generated else None,
        "actor_seconds": round(new_seconds, 3),
        "fingerprint": lock.fingerprint,
        "model": lock.model,
        "verification": verification,
        "distributions": bin_summary(labels, plan, plan_summary, measured=measured, pose_tolerance=verify.pose_deg),
        "reports": sorted({REPORT_NAME, PREVIEW_NAME} - set(report_errors)) if reports else [],
        "report_errors": report_errors,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    summary["complete"] = not run.failed and run.sample_failures == 0 and labels.num_rows + verification["dropped"] == plan_rows
    if verification["shortfall"] and verify.drops_rejects:
        log.warning("%d planned image(s) have no accepted image (budget spent); see summary.json and rejects.parquet", verification["shortfall"])
    from facegen.report.card import write_dataset_card  # README.md card + report.html (issue 11, point 5)
    summary.update(write_dataset_card(root, summary, reports=reports))
    write_summary(root, summary)
    return BalanceResult(root.url, plan_rows, labels.num_rows, run.sample_failures, dict(run.failed), run, summary)


__all__ = ["BalanceConfig", "BalanceResult", "check_output", "ensure_plan", "finalize", "prepare_output", "run_balance"]
