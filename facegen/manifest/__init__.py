"""Manifests (what to generate) and planning (one row per image to generate).

Public API:
    load_manifest(path) -> Manifest                  # validated; FacegenError "file:LINE: field: problem; fix"
    resolve_model_dir(manifest) -> Path              # `tiny` preset built on first use, or the folder
    plan_samples(manifest) -> pa.Table               # PLAN_SCHEMA rows, in memory (small plans)
    write_plan(manifest, out_dir) -> PlanInfo        # plan.parquet + identities.npy + plan_summary.json
    topup_counts(source_counts, target_share, total) -> TopUp
"""

from facegen.manifest.loader import load_manifest, validate_manifest
from facegen.manifest.model_ref import model_cache_dir, resolve_model_dir
from facegen.manifest.plan import PlanInfo, plan_samples, sample_seeds, write_plan
from facegen.manifest.schema import Manifest
from facegen.manifest.topup import TopUp, plan_topup, topup_counts

__all__ = [
    "Manifest",
    "PlanInfo",
    "TopUp",
    "load_manifest",
    "model_cache_dir",
    "plan_samples",
    "plan_topup",
    "resolve_model_dir",
    "sample_seeds",
    "topup_counts",
    "validate_manifest",
    "write_plan",
]
