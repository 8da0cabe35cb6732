"""What `facegen balance` costs on top of the model, and how the actor pool scales. Not a test.

In one run:
  1. The same small model and plan: the balance worker path (conditions + FaceCrafterPipeline + image
     encoding + tar/Parquet/stats writing) with the time inside the pipeline calls measured in the same
     run -- the bare denoising loop's images/s vs the whole path's (goal: ratio >= 0.9; measured in one
     moment because this shared 2-core machine's load swings 5x between runs). Then `facegen balance`
     itself on Ray (1 actor) against a bare pipeline run just before it: images/s inside the actor and
     end to end (wall clock incl. actor start, model load, plan, finalize, reports).
  2. Simulated actors (`SimulatedWorker`: sleep a fixed time per shard, no model): N actors, some of them
     crashing mid-shard (retried on replacement actors) vs 1 actor; start-up and work timed separately.

    .venv/bin/python benchmarks/balance_overhead.py [--images 32] [--sim-actors 16] [--sim-shards 48]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

MANIFEST = """\
version: 1
seed: 0
model: tiny
sampler: {{scheduler: dpmpp, steps: {steps}, batch_size: {batch}}}
output: {{samples_per_shard: {per_shard}, image_format: jpg, quality: 90}}
identities: {{random: {{count: 4}}}}
images_per_identity: {per_identity}
targets: {{emotion: uniform, controls: id+lmk+emo, pose: {{yaw: {{uniform: [-30, 30], bins: 4}}}}}}
"""


def bare_loop(manifest_path: Path, work: Path, threads: int) -> tuple[float, int]:
    """Seconds spent inside FaceCrafterPipeline calls for the whole plan, and the image count."""
    import pyarrow.parquet as pq
    import torch

    from facegen.conditions.builder import ConditionBuilder
    from facegen.manifest import load_manifest, resolve_model_dir, write_plan
    from facegen.model.pipeline import FaceCrafterPipeline, GuidanceWeights
    from facegen.runner.generation import _group_batches

    torch.set_num_threads(threads)
    manifest = load_manifest(manifest_path)
    plan_dir = work / "bare-plan"
    write_plan(manifest, plan_dir)
    pipe = FaceCrafterPipeline.from_pretrained(resolve_model_dir(manifest))
    builder = ConditionBuilder(plan_dir, manifest, pipe.landmark_image_size)
    plan = pq.read_table(plan_dir / "plan.parquet")
    s = manifest.sampler
    seconds = 0.0
    for batch in _group_batches(plan.column("controls").to_pylist(), s.batch_size):
        rows = plan.take(batch)
        cond = builder.build(rows)
        start = time.perf_counter()
        pipe(
            id_embeds=cond.id_embeds, landmark_images=cond.landmark_images, emotions=cond.emotions,
            use_lmk=cond.use_lmk, use_emo=cond.use_emo, seeds=rows.column("seed").to_pylist(),
            num_inference_steps=s.steps, guidance=GuidanceWeights(s.guidance.id, s.guidance.lmk, s.guidance.emo),
            scheduler=s.scheduler, output_type="np", progress=False,
        )
        seconds += time.perf_counter() - start
    return seconds, plan.num_rows


class TimedPipe:
    """Delegates to the pipeline and adds up the wall time spent inside its calls."""

    def __init__(self, pipe) -> None:  # type: ignore[no-untyped-def]
        self.pipe, self.seconds = pipe, 0.0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return self.pipe(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def attributed_run(manifest_path: Path, work: Path, threads: int) -> tuple[float, float, int]:
    """The balance worker path (conditions + pipeline + image encoding + tar/Parquet/stats writing) over
    the whole plan in this process, timing the pipeline calls inside it. Returns (seconds of the whole
    path, seconds inside the denoising loop, images): both numbers come from the same moment, so load
    from other processes on a shared machine cannot skew their ratio."""
    import torch

    from facegen.manifest import load_manifest, resolve_model_dir, write_plan
    from facegen.runner import ShardTask, units_from_parquet
    from facegen.labels import GENERATED_SCHEMA
    from facegen.runner.generation import GenerationWorker

    torch.set_num_threads(threads)
    manifest = load_manifest(manifest_path)
    plan_dir = work / "attributed-plan"
    write_plan(manifest, plan_dir)
    worker = GenerationWorker(str(resolve_model_dir(manifest)), str(plan_dir), manifest, threads=threads)
    task = ShardTask(lambda: worker, str(work / "attributed-out"), "bench", label_schema=GENERATED_SCHEMA)
    units = list(units_from_parquet(str(plan_dir / "plan.parquet")))
    task.execute(worker, units[0])  # warm-up shard, untimed
    worker.pipe = timed = TimedPipe(worker.pipe)
    start = time.perf_counter()
    for unit in units:
        task.execute(worker, unit)
    return time.perf_counter() - start, timed.seconds, sum(u.num_rows for u in units)


def balance_run(manifest_path: Path, out: Path, cpus: float) -> tuple[float, float, int, float]:
    """(wall seconds, actor shard seconds, samples, images/s after the actor's first (warm-up) shard)."""
    from facegen.runner.balance import BalanceConfig, run_balance

    start = time.perf_counter()
    result = run_balance(BalanceConfig(manifest=manifest_path, out=str(out), num_actors=1, cpus_per_actor=cpus, progress=False))
    wall = time.perf_counter() - start
    assert result.complete, result.summary
    shards = sorted(result.run.done.values(), key=lambda st: st.finished_at)[1:]
    warm = sum(st.count for st in shards) / sum(st.seconds for st in shards)
    return wall, sum(st.seconds for st in result.run.done.values()), result.samples, warm


def simulated(out: Path, actors: int, shards: int, seconds: float, crashes: int, cpus: float) -> tuple[float, float, float, int]:
    """(start-up seconds, seconds from pool ready to last shard, work span, retried shards)."""
    from facegen.runner import RayDistributor, ShardTask, assign_shards, run_shards, units_from_table
    from facegen.runner.simulated import SimulatedWorker

    rows = shards * 4
    table = assign_shards(pa.table({"key": [f"k{i:06d}" for i in range(rows)], "index": list(range(rows))}), 4)
    crash_dir = out / "crashes"
    crash_dir.mkdir(parents=True)
    crash = set(range(1, shards, max(1, shards // max(crashes, 1))))
    crash = set(sorted(crash)[:crashes])
    worker = functools.partial(SimulatedWorker, seconds, crash_shards=crash, crash_dir=str(crash_dir))
    task = ShardTask(worker, str(out / "ds"), "sim")
    pool = RayDistributor(actors, num_cpus=cpus / actors)
    start = time.perf_counter()
    pool.start(task)  # every actor built and ready: start-up is timed separately
    ready = time.perf_counter()
    summary = run_shards(units_from_table(table), task, pool, progress=False)
    wall = time.perf_counter() - ready
    assert summary.ok and summary.samples == rows, summary.failed
    begin = min(st.finished_at - st.seconds for st in summary.done.values())
    end = max(st.finished_at for st in summary.done.values())
    return ready - start, wall, end - begin, len(summary.retried)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images in the model comparison (multiple of 4)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cpus", type=float, default=2.0, help="CPUs of the local Ray (and threads of the bare loop)")
    parser.add_argument("--skip-simulated", action="store_true", help="only run part 1")
    parser.add_argument("--sim-actors", type=int, default=16)
    parser.add_argument("--sim-shards", type=int, default=48)
    parser.add_argument("--sim-seconds", type=float, default=1.0, help="sleep per simulated shard")
    parser.add_argument("--sim-crashes", type=int, default=4, help="shards whose first attempt kills its actor")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="facegen-bench-"))
    try:
        manifest = work / "bench.yaml"
        manifest.write_text(MANIFEST.format(steps=args.steps, batch=args.batch, per_shard=args.batch, per_identity=args.images // 4))
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        threads = max(1, int(args.cpus))
        whole, inside, n = attributed_run(manifest, work, threads)
        print(f"[1] {n} images, tiny model, {args.steps} steps, batch {args.batch}, {threads} threads")
        print(f"    denoising loop inside balance    {n / inside:8.2f} img/s")
        print(f"    balance worker path, whole       {n / whole:8.2f} img/s  ratio {inside / whole:.3f}  (goal >= 0.9; "
              f"{1000 * (whole - inside) / n:.1f} ms/img for conditions, encoding, tar/Parquet/stats)")
        bare_s2, n2 = bare_loop(manifest, work, threads)
        wall, actor_seconds, samples, warm = balance_run(manifest, work / "balance", args.cpus)
        bare2 = n2 / bare_s2
        print(f"    facegen balance on Ray, 1 actor (vs a bare run just before: {bare2:.2f} img/s):")
        print(f"      in the actor, all shards        {samples / actor_seconds:8.2f} img/s  ratio {samples / actor_seconds / bare2:.3f}")
        print(f"      in the actor, after 1st shard   {warm:8.2f} img/s  ratio {warm / bare2:.3f}  (first shard = torch warm-up)")
        print(f"      end to end                      {samples / wall:8.2f} img/s  ratio {samples / wall / bare2:.3f}  "
              f"(wall {wall:.1f} s incl. actor start, model load, plan, finalize, reports)")

        if args.skip_simulated:
            return
        up1, w1, span1, _ = simulated(work / "sim1", 1, args.sim_shards, args.sim_seconds, 0, args.cpus)
        upn, wn, spann, retried = simulated(work / "simN", args.sim_actors, args.sim_shards, args.sim_seconds, args.sim_crashes, args.cpus)
        print(f"[2] simulated: {args.sim_shards} shards x {args.sim_seconds:g} s; {args.sim_actors} actors "
              f"({retried} shards crash their actor once, retried on replacements) vs 1 actor")
        print(f"    1 actor    start-up {up1:6.2f} s   ready->done {w1:7.2f} s")
        print(f"    {args.sim_actors} actors  start-up {upn:6.2f} s   ready->done {wn:7.2f} s")
        print(f"    speedup    {w1 / wn:.2f} x after start-up, {(up1 + w1) / (upn + wn):.2f} x including it (ideal {args.sim_actors} x)")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
