"""Train and evaluate the synthface proxy estimator on rendered datasets (resumable, CPU).

`train_estimator` reads a `facegen synthface render` folder into memory, trains with AdamW + cosine
decay, checkpoints every `checkpoint_every` steps (weights, optimiser, step) and evaluates on a
held-out render (identities never trained on). `evaluate_estimator` is also what the study and the
tests use to check the measuring instrument.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from facegen.io import Location, ShardReader, shard_tars

from facegen.synthface.estimator import (
    INFO_FILE,
    WEIGHTS_FILE,
    EstimatorRunner,
    SynthfaceEstimator,
    augment,
    estimator_loss,
    identity_reliability,
    targets_from_labels,
)
from facegen.synthface.params import identity_embedding


#: The label columns the estimator trains on (what folders are concatenated by).
TARGET_COLUMNS = ["key", "identity_index", "yaw", "pitch", "roll", "emotion", "emotion_probs", "valence", "arousal",
                  "truth_expression", "truth_identity"]


def load_rendered(data_dir: str | Path, limit: int | None = None) -> tuple[np.ndarray, "pq.Table"]:
    """All images (N, H, W, 3) uint8 and labels of a synthface render folder, in key order."""
    data_dir = Path(data_dir)
    if not (data_dir / "labels.parquet").is_file():
        from facegen.errors import FacegenError

        raise FacegenError("no labels.parquet; render one with `facegen synthface render --out DIR`", where=str(data_dir))
    table = pq.read_table(data_dir / "labels.parquet")
    table = table.sort_by("key")
    if limit is not None:
        table = table.slice(0, limit)
    wanted = {k: i for i, k in enumerate(table.column("key").to_pylist())}
    images: list[np.ndarray | None] = [None] * len(wanted)
    root = Location(str(data_dir))
    for rel in shard_tars(root):
        for key, files in ShardReader(root, rel).samples(keys=wanted, exts=("jpg",)):
            images[wanted[key]] = np.asarray(Image.open(io.BytesIO(files["jpg"])).convert("RGB"))
    missing = [i for i, im in enumerate(images) if im is None]
    if missing:
        raise FileNotFoundError(f"{len(missing)} labelled images missing from {data_dir}/shards")
    return np.stack(images), table


@dataclass
class EstimatorMetrics:
    n: int
    yaw_rmse: float
    pitch_rmse: float
    roll_rmse: float
    expression_rmse: float
    emotion_accuracy: float
    bayes_emotion_accuracy: float  # the true posterior's arg-max vs the drawn class: the ceiling
    valence_rmse: float
    arousal_rmse: float
    identity_rank1: float  # nearest reference among the set's identities, plain cosine of embeddings
    identity_rank1_observable: float  # the same with the reliability-weighted similarity (the runner's)
    identities: int


def evaluate_estimator(runner: EstimatorRunner, images: np.ndarray, table) -> EstimatorMetrics:
    m = runner.measure(images)

    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    def rmse(a, b) -> float:
        return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))

    expr = np.asarray(table.column("truth_expression").combine_chunks().flatten(), np.float32).reshape(-1, 9)
    truth_probs = np.asarray(table.column("emotion_probs").combine_chunks().flatten(), np.float32).reshape(-1, 8)
    ident = np.asarray(table.column("truth_identity").combine_chunks().flatten(), np.float32).reshape(len(images), -1)
    ids = col("identity_index")
    uniq, first = np.unique(ids, return_index=True)
    refs = identity_embedding(ident[first])
    nearest = uniq[np.argmax(m.embedding @ refs.T, axis=1)]
    nearest_observable = uniq[np.argmax(runner.identity_similarity(m.embedding, refs), axis=1)]
    emotion = col("emotion")
    return EstimatorMetrics(
        n=len(images),
        yaw_rmse=rmse(m.yaw, col("yaw")),
        pitch_rmse=rmse(m.pitch, col("pitch")),
        roll_rmse=rmse(m.roll, col("roll")),
        expression_rmse=rmse(m.expression, expr),
        emotion_accuracy=float(np.mean(m.emotion == emotion)),
        bayes_emotion_accuracy=float(np.mean(truth_probs.argmax(1) == emotion)),
        valence_rmse=rmse(m.valence, col("valence")),
        arousal_rmse=rmse(m.arousal, col("arousal")),
        identity_rank1=float(np.mean(nearest == ids)),
        identity_rank1_observable=float(np.mean(nearest_observable == ids)),
        identities=len(uniq),
    )


def train_estimator(
    train_dir: str | Path | Sequence[str | Path],
    eval_dir: str | Path,
    out_dir: str | Path,
    *,
    steps: int = 6000,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 48,
    stem: str = "strided",
    soft_emotion: bool = False,
    seed: int = 0,
    checkpoint_every: int = 500,
    threads: int | None = None,
    log=print,
) -> EstimatorMetrics:
    """Train (or resume) the estimator on one or more render folders; writes weights + info (metrics on
    `eval_dir`) into `out_dir`."""
    from safetensors.torch import save_file

    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    train_dirs = [train_dir] if isinstance(train_dir, (str, Path)) else list(train_dir)
    loaded = [load_rendered(d) for d in train_dirs]
    images = loaded[0][0] if len(loaded) == 1 else np.concatenate([im for im, _ in loaded])
    table = loaded[0][1] if len(loaded) == 1 else pa.concat_tables([tb.select(TARGET_COLUMNS) for _, tb in loaded])
    del loaded
    if not (Path(eval_dir) / "labels.parquet").is_file():
        load_rendered(eval_dir)  # the same one-line error, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    targets = targets_from_labels(table)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8
    n = len(images)
    del images  # x_all is a copy: 320k renders are ~4 GB each
    torch.manual_seed(seed)
    model = SynthfaceEstimator(width, stem)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    start = 0
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log(f"resuming estimator training at step {start}")
    t0 = time.perf_counter()
    model.train()
    for step in range(start + 1, steps + 1):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x = augment(x_all[idx].float() / 255.0, gen)
        flip_lr = 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
        warm = min(1.0, step / 200)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.02 + 0.98 * flip_lr)
        loss, parts = estimator_loss(model(x), targets.take(idx), soft_emotion)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            rate = (step - start) / (time.perf_counter() - t0)
            log(f"step {step}/{steps} loss {float(loss.detach()):.4f} " + " ".join(f"{k} {v:.4f}" for k, v in parts.items())
                + f" ({rate:.2f} steps/s)")
        if step % checkpoint_every == 0 or step == steps:
            with Location(str(out)).open_atomic(ckpt.name) as f:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, f)
    model.eval()
    eval_images, eval_table = load_rendered(eval_dir)
    runner = EstimatorRunner(model)
    truth = targets_from_labels(eval_table).identity.numpy()
    runner.reliability = identity_reliability(runner.measure(eval_images).identity_features, truth)
    metrics = evaluate_estimator(runner, eval_images, eval_table)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE))
    info = {
        "width": width,
        "stem": stem,
        "soft_emotion": soft_emotion,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train_data": [str(d) for d in train_dirs] if len(train_dirs) > 1 else str(train_dirs[0]),
        "eval_data": str(eval_dir),
        "eval_metrics": asdict(metrics),
        # held-out R^2 per standardised identity feature: the weights of the runner's identity_similarity
        "identity_reliability": [round(float(v), 4) for v in runner.reliability],
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return metrics
