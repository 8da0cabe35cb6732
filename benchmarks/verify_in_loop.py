"""What measuring in the loop costs: images/s of the generation worker without and with the in-loop
estimators (manifest `verify: {mode: measure}`), side by side in one run. Not a test.

The same plan is generated twice per shard, alternating (off, measured, off, measured, ...), in this
process, so load from other processes on a shared machine hits both sides alike; both workers write
real shards (tar + Parquet + stats), the measured one with the measured columns filled.

    .venv/bin/python benchmarks/verify_in_loop.py                      # tiny model, synthface estimators
    .venv/bin/python benchmarks/verify_in_loop.py --model synthface --images 32 --steps 10
    options: --images N (default 48)  --steps S (default 4)  --batch B (default 8)  --size PX (tiny: 64)
             --threads T (torch threads, default 1)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

MANIFEST = """\
version: 1
seed: 0
model: {model}
sampler: {{scheduler: dpmpp, steps: {steps}, batch_size: {batch}{size}}}
output: {{samples_per_shard: {batch}, image_format: jpg, quality: 90}}
identities: {{random: {{count: 4}}}}
images_per_identity: {per_identity}
targets: {{emotion: uniform, controls: id+lmk+emo, pose: {{yaw: {{uniform: [-30, 30], bins: 4}}}}}}
verify:
  mode: measure
  estimators: {{pose: synthface, landmarks: synthface, emotion: synthface, identity: synthface}}
  tolerances: {{pose_deg: 15, emotion: match}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (random weights) or synthface (the shipped preset)")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="image side in px (default: the model's)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from facegen.labels import GENERATED_SCHEMA
    from facegen.manifest import load_manifest, resolve_model_dir, write_plan
    from facegen.runner import ShardTask, units_from_parquet
    from facegen.runner.generation import GenerationWorker
    from facegen.runner.verification import VerifySettings, resolve_verify

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="facegen-bench-verify-"))
    try:
        path = work / "m.yaml"
        path.write_text(MANIFEST.format(model=args.model, steps=args.steps, batch=args.batch, per_identity=max(1, args.images // 4),
                                        size=f", image_size: {args.size}" if args.size else ""))  # fmt: skip
        manifest = load_manifest(path)
        model_dir = resolve_model_dir(manifest)
        write_plan(manifest, work / "plan")
        settings = resolve_verify(manifest, model_dir)
        workers = {
            "off": GenerationWorker(str(model_dir), str(work / "plan"), manifest, threads=args.threads, verify=VerifySettings()),
            "measured": GenerationWorker(str(model_dir), str(work / "plan"), manifest, threads=args.threads, verify=settings),
        }
        tasks = {name: ShardTask(lambda: None, str(work / name), "bench", label_schema=GENERATED_SCHEMA) for name in workers}
        units = list(units_from_parquet(str(work / "plan" / "plan.parquet")))
        for name, worker in workers.items():  # warm-up (first calls, estimator load), untimed
            tasks[name].execute(worker, units[0])
        seconds = {name: 0.0 for name in workers}
        images = 0
        for unit in units[1:] or units:
            for name, worker in workers.items():
                start = time.perf_counter()
                tasks[name].execute(worker, unit)
                seconds[name] += time.perf_counter() - start
            images += unit.num_rows
        rate = {name: images / s for name, s in seconds.items()}
        print(f"model {args.model}, {images} timed images ({args.steps} steps, batch {args.batch}, "
              f"{workers['off'].size}px, {args.threads} torch thread(s)); estimators: {settings.estimators()}")  # fmt: skip
        print(f"{'':<28}{'images/s':>10}{'s/image':>10}")
        print(f"{'without measuring':<28}{rate['off']:>10.2f}{1 / rate['off']:>10.3f}")
        print(f"{'with in-loop measuring':<28}{rate['measured']:>10.2f}{1 / rate['measured']:>10.3f}")
        print(f"ratio measured / off: {rate['measured'] / rate['off']:.3f}  (measuring adds "
              f"{(seconds['measured'] - seconds['off']) / images * 1000:.1f} ms per image)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
