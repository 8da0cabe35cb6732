"""The generation worker: one FaceCrafter pipeline per actor, plan rows in, encoded samples out.

With in-loop verification (manifest `verify:`) the same actor measures every decoded batch right after
the sampler, before encoding (`facegen.runner.verification.LoopMeasurer`), and yields images outside
tolerance as `RejectedSample` in modes reject / regenerate. Labels use GENERATED_SCHEMA: the plan's
values under ``target_*`` names (`facegen.labels.TARGET_RENAMES`) next to the ``measured_*`` columns.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from facegen.io.fs import Location
from facegen.io.samples import RejectedSample, Sample, SampleFailure
from facegen.labels import GENERATED_SCHEMA, TARGET_RENAMES
from facegen.runner.units import WorkUnit
from facegen.runner.verification import LoopMeasurer, VerifySettings, unmeasured_columns

log = logging.getLogger(__name__)

#: Plan files an actor needs besides the rows it is handed (copied locally when the plan is remote).
PLAN_SIDE_FILES = ("identities.npy", "plan_summary.json")


@dataclass(frozen=True)
class GenerationSettings:
    """How to run the sampler (from the manifest's ``sampler`` + ``output`` sections)."""

    steps: int
    scheduler: str
    guidance_id: float
    guidance_lmk: float
    guidance_emo: float
    batch_size: int
    image_size: int | None
    image_format: str  # jpg | png | webp
    quality: int
    store_landmark_image: bool
    #: `sampler.guidance_intervals` as a dict ({"unit", "id", "lmk", "emo"}); None = eq. 6 at every step.
    guidance_intervals: dict[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def from_manifest(cls, manifest: Any) -> "GenerationSettings":
        s, o = manifest.sampler, manifest.output
        return cls(
            steps=s.steps,
            scheduler=s.scheduler,
            guidance_id=s.guidance.id,
            guidance_lmk=s.guidance.lmk,
            guidance_emo=s.guidance.emo,
            batch_size=s.batch_size,
            image_size=s.image_size,
            image_format=o.image_format,
            quality=o.quality,
            store_landmark_image=o.store_landmark_image,
            guidance_intervals=None if s.guidance_intervals is None else s.guidance_intervals.model_dump(),
        )


def encode_image(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    """uint8 (H,W,3) -> jpg/png/webp bytes (deterministic for the same pixels)."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if fmt == "jpg":
        image.save(buffer, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "png":
        image.save(buffer, format="PNG", optimize=False)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buffer.getvalue()


def _local_plan_dir(plan_url: str) -> str:
    """The plan folder as a local path (remote plans: the side files are copied to a temp dir)."""
    loc = Location(plan_url)
    if loc.is_local:
        return loc.path()
    local = tempfile.mkdtemp(prefix="facegen-plan-")
    for name in PLAN_SIDE_FILES:
        if loc.exists(name):
            with open(os.path.join(local, name), "wb") as f:
                f.write(loc.read_bytes(name))
    return local


def _group_batches(controls: Sequence[str], batch_size: int) -> list[list[int]]:
    """Row positions batched so each batch shares one control set (stable, deterministic)."""
    by_set: dict[str, list[int]] = {}
    for i, name in enumerate(controls):
        by_set.setdefault(name, []).append(i)
    batches: list[list[int]] = []
    for name in sorted(by_set):
        rows = by_set[name]
        batches.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    return batches


class GenerationWorker:
    """Loads the model and the condition builder once; turns plan rows into samples.

    Rows sharing a control set are batched (``sampler.batch_size``); results are yielded in plan order.
    A batch that raises is retried sample by sample so one bad sample becomes one ``SampleFailure``.
    `verify` (resolved in the driver): the estimators are loaded here once and run on every batch.
    """

    def __init__(
        self,
        model_dir: str,
        plan_url: str,
        manifest: Any,
        *,
        device: str | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        expected_model_hash: str | None = None,
        verify: VerifySettings | None = None,
    ) -> None:
        import torch

        from facegen.conditions.builder import ConditionBuilder
        from facegen.model.pipeline import FaceCrafterPipeline
        from facegen.model.schedulers import scheduler_from_name

        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = "float16" if self.device.startswith("cuda") else "float32"
        self.pipe = FaceCrafterPipeline.from_pretrained(model_dir, device=self.device, torch_dtype=getattr(torch, dtype))
        if expected_model_hash and self.pipe.model_hash != expected_model_hash:
            # Another node holds different weights under the same path: never mix models in one dataset.
            raise RuntimeError(
                f"model at {model_dir} on this node has hash {self.pipe.model_hash}, the run expects {expected_model_hash}"
            )
        self.settings = GenerationSettings.from_manifest(manifest)
        # the manifest's sampler name -> a diffusers scheduler, through the one table
        self.pipe.scheduler = scheduler_from_name(self.settings.scheduler, self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)
        self.builder = ConditionBuilder(_local_plan_dir(plan_url), manifest, self.pipe.landmark_image_size)
        self.size = self.settings.image_size or int(self.pipe.resolution)
        self.verify = verify or VerifySettings()
        self.measurer = LoopMeasurer(self.verify, self.builder) if self.verify.measures else None

    def process(self, unit: WorkUnit) -> Iterator[Sample | SampleFailure | RejectedSample]:
        rows = unit.rows
        results: dict[int, Sample | SampleFailure | RejectedSample] = {}
        for batch in _group_batches(rows.column("controls").to_pylist(), self.settings.batch_size):
            for pos, item in zip(batch, self._generate(rows.take(batch))):
                results[pos] = item
        for pos in range(rows.num_rows):
            yield results[pos]

    # -- one batch ------------------------------------------------------------------------------
    def _generate(self, rows: pa.Table) -> list[Sample | SampleFailure | RejectedSample]:
        try:
            return self._run(rows)
        except Exception as exc:  # noqa: BLE001 - isolate the culprit sample(s) below
            if rows.num_rows == 1:
                return [SampleFailure(rows.column("key")[0].as_py(), f"{type(exc).__name__}: {exc}")]
            log.warning("batch of %d failed (%s); retrying one by one", rows.num_rows, exc)
            return [item for i in range(rows.num_rows) for item in self._generate(rows.slice(i, 1))]

    def _run(self, rows: pa.Table) -> list[Sample | SampleFailure | RejectedSample]:
        from facegen.model.pipeline import GuidanceWeights, to_uint8

        s = self.settings
        cond = self.builder.build(rows)
        out = self.pipe(
            id_embeds=cond.id_embeds,
            landmark_images=cond.landmark_images,
            emotions=cond.emotions,
            use_lmk=cond.use_lmk,
            use_emo=cond.use_emo,
            seeds=[int(x) for x in rows.column("seed").to_pylist()],
            num_inference_steps=s.steps,
            guidance=GuidanceWeights(id=s.guidance_id, lmk=s.guidance_lmk, emo=s.guidance_emo),
            height=self.size,
            width=self.size,
            output_type="np",
            guidance_intervals=s.guidance_intervals,
        )
        images = to_uint8(out.images)
        lmk = cond.landmark_uint8 if s.store_landmark_image else None
        # measured on the decoded pixels, in this actor, before encoding (no second pass over the tars)
        measured = self.measurer.measure(images, rows) if self.measurer is not None else [unmeasured_columns()] * rows.num_rows
        samples: list[Sample | SampleFailure | RejectedSample] = []
        for i, row in enumerate(rows.to_pylist()):
            samples.append(self._sample(row, images[i], None if lmk is None else lmk[i], measured[i]))
        return samples

    def _sample(
        self, row: dict[str, Any], pixels: np.ndarray, lmk: np.ndarray | None, measured: dict[str, Any]
    ) -> Sample | SampleFailure | RejectedSample:
        s = self.settings
        key = row["key"]
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            return SampleFailure(key, f"ValueError: pipeline returned an image of shape {pixels.shape} {pixels.dtype}")
        if pixels.max() == pixels.min():
            return SampleFailure(key, "ValueError: constant image (NaN/inf in the sampler output?)")
        label = {TARGET_RENAMES.get(k, k): v for k, v in row.items()}  # planned values are targets
        label["round"] = int(row.get("round", 0))
        label.update(
            image_format=s.image_format,
            width=int(pixels.shape[1]),
            height=int(pixels.shape[0]),
            steps=s.steps,
            scheduler=s.scheduler,
            guidance_id=s.guidance_id,
            guidance_lmk=s.guidance_lmk,
            guidance_emo=s.guidance_emo,
            model_id=str(self.pipe.model_id),
        )
        label.update(measured)
        label = {name: label[name] for name in GENERATED_SCHEMA.names}  # the schema's columns, in its order
        if self.verify.drops_rejects and not label["accepted"]:
            return RejectedSample(key, label)  # its row goes to the shard's rejects Parquet, no image
        meta = {k: _json_value(v) for k, v in label.items()}
        meta["guidance"] = {"id": s.guidance_id, "lmk": s.guidance_lmk, "emo": s.guidance_emo}
        # which guidance intervals made this sample (null = eq. 6 at every step); JSON only, no Parquet column
        meta["guidance_intervals"] = s.guidance_intervals
        files = {
            s.image_format: encode_image(pixels, s.image_format, s.quality),
            "json": json.dumps(meta, sort_keys=True).encode(),
            "cls": str(int(row["identity"])).encode(),
        }
        if lmk is not None:
            files["lmk.png"] = encode_image(lmk, "png", 100)
        return Sample(key, files, label)


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        # Shortest text that reads back as the same float32 (labels are float32 in the Parquet).
        return float(str(np.float32(value))) if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
