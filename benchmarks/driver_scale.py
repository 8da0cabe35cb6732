"""The driver at scale (issue 13, point 2): zero-cost workers, real driver. Not a test (a small run is).

Part 1 -- for each size, in a fresh process: the driver path of `facegen balance` with workers that return
at once (`SimulatedWorker(0)`: one tiny sample per plan row, written by the real shard writer in the
actor). Everything the driver does is the real code: the streaming planner (`ensure_plan` ->
`write_plan`), the resume listing, streaming units from plan.parquet, dispatching to a Ray actor pool,
collecting results, aggregating them, and finalize (labels.parquet, failures.parquet, summary.json;
reports are off: they are a view drawn from a sample of the rows). Then the same command again on the
finished dataset (a resume with nothing left to do: every marker listed, every shard checked). Driver CPU
is the driver process's own (all its threads, Ray's included); Ray start-up and actor start-up are fixed
costs reported apart. Peak RSS is the driver process's own max RSS.

Part 2 -- 16 simulated actors (`SimulatedWorker(seconds)`) on a few hundred short shards, 10% of them
crashing their actor mid-shard once (retried), against one actor: throughput after start-up.

    nice -n 19 .venv/bin/python benchmarks/driver_scale.py [--shards 10000 100000 1000000] [--actors 2]
        [--sim-actors 16 --sim-shards 320 --sim-seconds 1.0 --sim-crash 0.1 --sim-jitter 0] [--skip-scale] [--skip-sim]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _manifest(shards: int, rows_per_shard: int) -> Any:
    """A valid manifest whose plan has exactly `shards` shards of `rows_per_shard` rows."""
    from facegen.manifest import validate_manifest

    identities = 16
    rows = shards * rows_per_shard
    if rows % identities:
        raise SystemExit(f"--shards x --rows-per-shard must be a multiple of {identities}")
    data = {
        "version": 1,
        "seed": 1,
        "model": "tiny",
        "output": {"samples_per_shard": rows_per_shard},
        "identities": {"random": {"count": identities, "max_similarity": 0.5}},
        "images_per_identity": rows // identities,
        "targets": {"emotion": "uniform", "pose": {"yaw": {"uniform": [-45, 45], "bins": 9}}},
        "limits": {"max_images": max(rows, 1)},
    }
    return validate_manifest(data, source="<driver_scale>", lines={}, base_dir=Path.cwd())


def label_defaults(schema: Any) -> dict[str, Any]:
    """A zero value for every column of `schema`: the generation columns a zero-cost worker does not
    compute (its rows then have the width of real label rows)."""
    import pyarrow as pa

    def zero(t: Any) -> Any:
        if pa.types.is_fixed_size_list(t):
            return [zero(t.value_type)] * t.list_size
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return []
        if pa.types.is_boolean(t):
            return False
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return ""
        if pa.types.is_floating(t):
            return 0.0
        if pa.types.is_integer(t):
            return 0
        return None

    return {f.name: zero(f.type) for f in schema}


def _ray_init(cpus: float) -> None:
    """A private local Ray; retried, because on a loaded machine the raylet can miss Ray's fixed 30-s
    start-up window."""
    import ray

    for attempt in range(6):
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception:  # noqa: BLE001 - "The current node timed out during startup"
            ray.shutdown()
            _kill_own_children()  # the failed node's GCS, raylet, dashboard: ray.shutdown() leaves them running
            if attempt == 5:
                raise


def _kill_own_children() -> None:
    """Stop the processes this process started (only its own descendants) after a failed Ray start."""
    try:
        import psutil
    except ImportError:
        return
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=10)


def _cpu() -> float:
    return time.process_time()


def _rss_mib() -> float:
    """Peak RSS of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_mib() -> float:
    """RSS of this process now (MiB; Linux), to tell what a phase keeps from what it only touched."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


class _Phase:
    """CPU and wall seconds of a block, the RSS peak and current RSS after it (into `out` under `name`),
    optionally under cProfile (`profile_dir`/NAME.prof)."""

    def __init__(self, out: dict[str, Any], name: str, profile_dir: str | None = None) -> None:
        self.out, self.name, self.profile_dir = out, name, profile_dir
        self.profiler: Any = None

    def __enter__(self) -> "_Phase":
        if self.profile_dir:
            import cProfile

            self.profiler = cProfile.Profile()
        self.cpu, self.wall = _cpu(), time.perf_counter()
        if self.profiler is not None:
            self.profiler.enable()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.profiler is not None:
            self.profiler.disable()
        self.out[f"{self.name}_cpu"] = _cpu() - self.cpu
        self.out[f"{self.name}_wall"] = time.perf_counter() - self.wall
        self.out[f"{self.name}_peak_mib"] = _rss_mib()
        self.out[f"{self.name}_now_mib"] = _current_mib()
        if self.profiler is not None:
            self.profiler.dump_stats(os.path.join(self.profile_dir, f"{self.out['shards']}-{self.name}.prof"))


def scale_child(shards: int, rows_per_shard: int, actors: int, cpus: float, work: Path,
                profile_dir: str | None = None) -> dict[str, Any]:
    """One size, in this (fresh) process: returns the phase CPU/wall seconds and the peak RSS."""
    import ray

    from facegen.io.fs import Location
    from facegen.io.lock import Lock
    from facegen.labels import GENERATED_SCHEMA
    from facegen.runner import RayDistributor, ShardTask
    from facegen.runner.balance import PLAN_NAME, ensure_plan, finalize
    from facegen.runner.run import run_plan, verified_finished
    from facegen.runner.simulated import SimulatedWorker

    out: dict[str, Any] = {"shards": shards, "rows": shards * rows_per_shard, "baseline_mib": _rss_mib()}
    manifest = _manifest(shards, rows_per_shard)
    root = Location(str(work / "ds"))
    root.makedirs("")
    lock = Lock.create(manifest.model_dump(mode="json"), "<driver_scale>", b"", {"name": "zero-cost", "hash": "0"})
    task = ShardTask(
        functools.partial(SimulatedWorker, 0.0, label_rows=True, label_defaults=label_defaults(GENERATED_SCHEMA)),
        root.url,
        lock.fingerprint,
        label_schema=GENERATED_SCHEMA,
        extra_stats={"model_hash": "0" * 64, "manifest_sha256": lock.manifest_sha256},
    )
    with _Phase(out, "plan", profile_dir):
        plan_rows = ensure_plan(root, manifest)
    assert plan_rows == shards * rows_per_shard, plan_rows

    c = _cpu()
    _ray_init(cpus)
    out["ray_cpu"] = _cpu() - c
    try:
        for phase in ("run", "resume"):
            pool = RayDistributor(actors, num_cpus=cpus / actors)
            with _Phase(out, f"{phase}_start"):
                pool.start(task)
            with _Phase(out, phase, profile_dir):
                finished = verified_finished(root, lock.fingerprint, pool, task)  # as balance: markers checked on the actors
                run = run_plan(root.url_of(PLAN_NAME), task, pool, total_rows=plan_rows, progress=False, finished=finished)
            with _Phase(out, f"{phase}_finalize", profile_dir):
                result = finalize(root, manifest, lock, plan_rows, run, reports=False)
            assert result.complete, result.summary
            assert len(run.resumed) == (shards if phase == "resume" else 0), len(run.resumed)
            del run, result
    finally:
        ray.shutdown()
    out["peak_mib"] = _rss_mib()
    return out


def run_scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 1: one fresh process per size; prints the table, returns the rows."""
    print(f"[1] driver at scale: zero-cost workers, {args.actors} actors, {args.rows_per_shard} row(s) per shard")
    print(f"{'shards':>10} {'driver CPU s':>13} {'CPU ms/shard':>13} {'peak RSS MiB':>13} {'wall s':>8}"
          f" {'resume CPU ms/shard':>20} {'resume RSS':>11}   phases (CPU s: plan / dispatch+collect / finalize)")
    rows = []
    for shards in args.shards:
        work = Path(tempfile.mkdtemp(prefix="facegen-driver-", dir=args.work))
        try:
            cmd = [sys.executable, __file__, "--_child", str(shards), "--rows-per-shard", str(args.rows_per_shard),
                   "--actors", str(args.actors), "--cpus", str(args.cpus), "--work", str(work)]
            if args.profile:
                cmd += ["--profile", str(Path(args.profile).resolve())]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(proc.returncode)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        r["driver_cpu"] = r["plan_cpu"] + r["run_cpu"] + r["run_finalize_cpu"]
        r["ms_per_shard"] = 1000 * r["driver_cpu"] / shards
        r["resume_dispatch_cpu"] = r["resume_cpu"]
        r["resume_cpu"] = r["resume_cpu"] + r["resume_finalize_cpu"]
        r["resume_ms_per_shard"] = 1000 * r["resume_cpu"] / shards
        r["wall"] = r["plan_wall"] + r["run_wall"] + r["run_finalize_wall"]
        rows.append(r)
        print(f"{shards:>10,} {r['driver_cpu']:>13.1f} {r['ms_per_shard']:>13.3f} {r['peak_mib']:>13,.0f} {r['wall']:>8.1f}"
              f" {r['resume_ms_per_shard']:>20.3f} {'(same run)':>11}   {r['plan_cpu']:.1f} / {r['run_cpu']:.1f} /"
              f" {r['run_finalize_cpu']:.1f}  (fixed: Ray start {r['ray_cpu']:.1f} s, actors {r['run_start_cpu']:.1f} s CPU;"
              f" before work {r['baseline_mib']:.0f} MiB)", flush=True)
        phases = ("plan", "run_start", "run", "run_finalize", "resume", "resume_finalize")
        print(f"{'':>10} RSS MiB after each phase, peak/now: "
              + ", ".join(f"{p} {r[p + '_peak_mib']:,.0f}/{r[p + '_now_mib']:,.0f}" for p in phases), flush=True)
        if args.json:  # the rows so far, before the (slow) removal of ~3 files per shard
            Path(args.json).write_text(json.dumps({"scale": rows}, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _sim_run(work: Path, actors: int, shards: int, seconds: float, crash_every: int, cpus: float,
             spares: int, jitter: float = 0.0, queue_depth: int = 2) -> dict[str, Any]:
    """One simulated pool: start-up s, ready->done s, the shards' own seconds, retried shards, queued calls."""
    import pyarrow as pa

    from facegen.runner import RayDistributor, ShardTask, assign_shards, run_shards, units_from_table
    from facegen.runner.simulated import SimulatedWorker

    table = assign_shards(pa.table({"key": [f"k{i:06d}" for i in range(shards * 2)], "index": list(range(shards * 2))}), 2)
    crash_dir = work / "crashes"
    crash_dir.mkdir(parents=True)
    crash = set(range(crash_every // 2, shards, crash_every)) if crash_every else set()
    worker = functools.partial(SimulatedWorker, seconds, crash_shards=crash, crash_dir=str(crash_dir), crash_at=0.5,
                               jitter=jitter)
    task = ShardTask(worker, str(work / "ds"), "sim")
    pool = RayDistributor(actors, num_cpus=cpus / (actors + spares), spare_actors=spares, max_replacements=len(crash) + actors,
                          queue_depth=queue_depth)
    t = time.perf_counter()
    pool.start(task)
    ready = time.perf_counter()
    summary = run_shards(units_from_table(table), task, pool, progress=False)
    done = time.perf_counter()
    assert summary.ok and summary.samples == shards * 2, summary.failed
    crashed = len(list(crash_dir.iterdir()))
    assert crashed == len(crash), (crashed, len(crash))
    shard_seconds = sum(worker().shard_seconds(s) for s in range(shards))  # the work itself, crashes' lost halves not counted
    return {"startup": ready - t, "work": done - ready, "shard_seconds": shard_seconds, "retried": len(summary.retried),
            "crashed": crashed, "queued_calls": pool.queued_calls}


def run_sim(args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: N simulated actors with crashes vs one actor; prints the efficiency line."""
    import ray

    work = Path(tempfile.mkdtemp(prefix="facegen-sim-", dir=args.work))
    _ray_init(args.cpus)
    try:
        crash_every = round(1 / args.sim_crash) if args.sim_crash > 0 else 0
        common = {"jitter": args.sim_jitter, "queue_depth": args.queue_depth}
        one = _sim_run(work / "one", 1, args.sim_baseline_shards, args.sim_seconds, 0, args.cpus, 0, **common)
        many = _sim_run(work / "many", args.sim_actors, args.sim_shards, args.sim_seconds, crash_every, args.cpus, args.spares,
                        **common)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    # throughput = seconds of shard work done per second of wall (equal to shards/s x seconds without jitter)
    rate1 = one["shard_seconds"] / one["work"]
    rate = many["shard_seconds"] / many["work"]
    speedup = rate / rate1
    eff = speedup / args.sim_actors
    print(f"[2] simulated: {args.sim_shards} shards x {args.sim_seconds:g} s (jitter {args.sim_jitter:g}), {many['crashed']} of "
          f"them ({args.sim_crash:.0%}) crash their actor once mid-shard; {args.spares} warm spare(s); queue depth "
          f"{args.queue_depth}; baseline 1 actor on {args.sim_baseline_shards} shards")
    print(f"    1 actor    start-up {one['startup']:6.2f} s   work {one['work']:7.2f} s   {rate1:.3f} shard-seconds/s")
    print(f"    {args.sim_actors} actors  start-up {many['startup']:6.2f} s   work {many['work']:7.2f} s   {rate:.3f} shard-seconds/s"
          f"   ({many['shard_seconds']:.1f} s of shards, {many['queued_calls']} calls queued behind a running one)")
    print(f"{args.sim_actors} actors: {speedup:.1f} x one actor after start-up (eff {eff:.2f})", flush=True)
    return {"actors": args.sim_actors, "shards": args.sim_shards, "seconds": args.sim_seconds, "jitter": args.sim_jitter,
            "queue_depth": args.queue_depth, "crashed": many["crashed"], "spares": args.spares, "speedup": speedup,
            "efficiency": eff, "one": one, "many": many}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rows-per-shard", type=int, default=1)
    parser.add_argument("--actors", type=int, default=2, help="zero-cost actors of part 1")
    parser.add_argument("--cpus", type=float, default=2.0, help="CPUs of the local Ray")
    parser.add_argument("--sim-actors", type=int, default=16)
    parser.add_argument("--sim-shards", type=int, default=320)
    parser.add_argument("--sim-seconds", type=float, default=1.0, help="sleep per simulated shard")
    parser.add_argument("--sim-crash", type=float, default=0.1, help="fraction of shards whose first attempt kills its actor")
    parser.add_argument("--sim-jitter", type=float, default=0.0,
                        help="shard times spread over seconds x (1 +- jitter), the same spread for the baseline")
    parser.add_argument("--queue-depth", type=int, default=2, help="calls in flight per actor (RayDistributor(queue_depth=))")
    parser.add_argument("--sim-baseline-shards", type=int, default=20, help="shards of the one-actor baseline")
    parser.add_argument("--spares", type=int, default=2, help="warm spare actors of the simulated pool (RayDistributor(spare_actors=))")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--work", default=None, help="scratch folder (default: the system temp)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--profile", default=None, help="folder for cProfile stats of each phase (SHARDS-PHASE.prof)")
    parser.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0.0 <= args.sim_jitter < 1.0:
        parser.error("--sim-jitter must be in [0, 1)")
    if args.queue_depth < 1:
        parser.error("--queue-depth must be >= 1")
    if args._child is not None:
        print(json.dumps(scale_child(args._child, args.rows_per_shard, args.actors, args.cpus, Path(args.work), args.profile)))
        return
    results: dict[str, Any] = {}
    if not args.skip_scale:
        results["scale"] = run_scale(args)
    if not args.skip_sim:
        results["simulated"] = run_sim(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
