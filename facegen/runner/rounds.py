"""Regeneration rounds (manifest `verify: {mode: regenerate}`): which plan rows are made again, with
which keys, seeds and shards.

Round 0 is the plan itself (`plan.parquet`, keys ``000000042``). Round r >= 1 remakes the plan rows whose
latest image was rejected (the previous round's rejects, and rejects an earlier round's budget left out,
so a raised budget picks them up), in plan-index order, as many as the budget allows:

* key ``000000042_r01`` (unique, sortable: a plan key, then its rounds in order; no dots),
* seed ``sample_seeds(seed, index + r * ROUND_SEED_STRIDE)``: deterministic in (plan index, round) and
  never equal to a round-0 seed of another row (plan indices stay below the stride),
* shards numbered after every earlier round's shards, ``rows_per_round_shard`` rows each (spread like
  round 0, at least one sampler batch per shard).

Each round's rows are written once to ``rounds/round_RR.parquet`` before its first shard starts, so a
resumed run (even after a SIGKILL mid-round) generates exactly the same rows, keys and seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facegen.labels import PLAN_SCHEMA, generated_to_plan

ROUNDS_DIR = "rounds"
#: Round r's seeds are those of plan indices shifted by r strides (plans never reach 2**40 rows).
ROUND_SEED_STRIDE = 1 << 40
ROUND_PLAN_SCHEMA = pa.schema(list(PLAN_SCHEMA) + [pa.field("round", pa.int16(), nullable=False)])


def round_plan_name(round_: int) -> str:
    return f"{ROUNDS_DIR}/round_{round_:02d}.parquet"


def round_key(plan_key: str, round_: int) -> str:
    """``000000042`` in round 0, ``000000042_r02`` in round 2."""
    return plan_key if round_ == 0 else f"{plan_key}_r{round_:02d}"


def plan_key(key: str) -> str:
    """The plan key a sample key was made for (its round suffix stripped)."""
    return key.split("_r", 1)[0]


def round_seeds(seed: int, index: np.ndarray, round_: int) -> np.ndarray:
    """Per-sample noise seeds of round `round_` (round 0: exactly the plan's seeds)."""
    from facegen.manifest.plan import sample_seeds

    return sample_seeds(seed, np.asarray(index, dtype=np.int64) + round_ * ROUND_SEED_STRIDE)


def rows_per_round_shard(rows: int, round0_shards: int, samples_per_shard: int, batch_size: int = 1) -> int:
    """Spread a round over as many shards as round 0 had (parallelism), at most `samples_per_shard` each,
    but never thinner than one sampler batch: the late rounds of a run are small, and a few rows in each
    of many shards would cost a (mostly empty) pipeline call per shard where one full batch does the work."""
    spread = math.ceil(rows / max(1, round0_shards))
    return max(1, min(samples_per_shard, max(spread, batch_size)))


def still_open(rejected: pa.Table, latest_attempt: dict[int, int]) -> pa.Table:
    """The `rejected` rows that are their plan row's latest attempt (`latest_attempt`: plan index -> the
    last round that made it; absent = round 0). A row accepted later, or made again later, drops out."""
    if rejected.num_rows == 0:
        return rejected
    index = rejected.column("index").to_numpy()
    made_in = rejected.column("round").to_numpy()
    latest = np.fromiter((latest_attempt.get(int(i), 0) for i in index), dtype=np.int64, count=len(index))
    return rejected.filter(pa.array(made_in == latest))


def make_round_plan(
    rejected: pa.Table, round_: int, *, seed: int, first_shard: int, rows_per_shard: int, limit: int
) -> pa.Table:
    """Round `round_`'s rows (ROUND_PLAN_SCHEMA): the plan rows of the `rejected` generated rows (the
    open rejects, `still_open`), in plan-index order, at most `limit` of them, with new keys, seeds, shards."""
    plan = generated_to_plan(rejected)
    plan = plan.take(pc.sort_indices(plan, [("index", "ascending")]))
    plan = plan.slice(0, max(0, limit))
    n = plan.num_rows
    index = plan.column("index").to_numpy()
    base_keys = [plan_key(k) for k in plan.column("key").to_pylist()]
    columns = {name: plan.column(name) for name in PLAN_SCHEMA.names}
    columns["key"] = pa.array([round_key(k, round_) for k in base_keys], pa.string())
    columns["seed"] = pa.array(round_seeds(seed, index, round_), pa.int64())
    columns["shard"] = pa.array((first_shard + np.arange(n) // rows_per_shard).astype(np.int32), pa.int32())
    columns["round"] = pa.array(np.full(n, round_, np.int16), pa.int16())
    return pa.table(columns, schema=ROUND_PLAN_SCHEMA)


def coverage_problems(
    plan_keys: list[str], sample_keys: list[str], rejected_keys: list[str], failed_keys: list[str], dropped: int | None = None
) -> list[str]:
    """Integrity of a dataset made in rounds: every sample key is a round of a plan key, no plan row has
    two samples, and every plan row without a sample was rejected (its last image, see rejects.parquet)
    or failed (failures.parquet). `dropped`: what summary.json reports as dropped, checked when given."""
    problems: list[str] = []
    planned = set(plan_keys)
    made = [plan_key(k) for k in sample_keys]
    extra = sorted({k for k, m in zip(sample_keys, made) if m not in planned})
    if extra:
        problems.append(f"{len(extra)} key(s) in tars are not in the plan, e.g. {extra[:3]}")
    counts: dict[str, int] = {}
    for m in made:
        counts[m] = counts.get(m, 0) + 1
    twice = sorted(k for k, n in counts.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} plan row(s) have more than one sample (rounds), e.g. {twice[:3]}")
    missing = planned - set(counts)
    rejected = {plan_key(k) for k in rejected_keys} & missing
    failed = {plan_key(k) for k in failed_keys} & missing
    lost = sorted(missing - rejected - failed)
    if lost:
        problems.append(f"tars hold {len(sample_keys)} samples for a plan of {len(planned)} rows: {len(lost)} plan row(s) "
                        f"have no sample, reject or failure, e.g. {lost[:3]}; re-run balance")  # fmt: skip
    if dropped is not None and dropped != len(rejected - failed):
        problems.append(f"summary.json says {dropped} plan row(s) were dropped after rejection, the files say {len(rejected - failed)}")
    return problems


__all__ = [
    "coverage_problems",
    "ROUNDS_DIR",
    "ROUND_PLAN_SCHEMA",
    "ROUND_SEED_STRIDE",
    "make_round_plan",
    "plan_key",
    "round_key",
    "round_plan_name",
    "round_seeds",
    "rows_per_round_shard",
]
