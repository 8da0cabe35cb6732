"""Manifests for in-loop verification on the `tiny` preset (random weights) measured by the shipped
synthface proxy estimator, which runs on any image size (it resizes to 64 px)."""

from __future__ import annotations

from pathlib import Path

MANIFEST = """\
version: 1
seed: {seed}
model: tiny
sampler: {{scheduler: dpmpp, steps: 1, image_size: 32, batch_size: 4}}
output: {{samples_per_shard: {per_shard}, image_format: jpg}}
identities: {{random: {{count: 2}}}}
images_per_identity: {per_identity}
targets:
  emotion: uniform
  pose: {{yaw: {{uniform: [-30, 30], bins: 2}}}}
  controls: {controls}
verify:
  mode: {mode}
  estimators: {{pose: synthface, landmarks: synthface, emotion: synthface, identity: synthface}}
  tolerances: {{pose_deg: {pose_deg}, emotion: off}}
  max_rounds: {max_rounds}
  max_total_factor: {factor}
"""


def write_manifest(folder: Path, name: str = "m.yaml", **values: object) -> Path:
    """A verify manifest; defaults: 12 images (2 identities x 6) in shards of 4, mode regenerate."""
    options = dict(seed=3, per_shard=4, per_identity=6, controls="id+lmk+emo", mode="regenerate", pose_deg=25,
                   max_rounds=3, factor=2.0)  # fmt: skip
    options.update(values)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(MANIFEST.format(**options), encoding="utf-8")
    return path


def balance_in_process(manifest: Path, out: Path, **options: object):
    """`facegen balance --in-process` as a library call (no child process, no Ray)."""
    from facegen.runner.balance import BalanceConfig, run_balance

    return run_balance(BalanceConfig(manifest=manifest, out=str(out), distributor="in-process", progress=False, **options))
