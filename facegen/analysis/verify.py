"""`facegen verify`: re-measure generated images and compare with what was planned.

Reads a `facegen balance` output (``labels.parquet`` rows + ``shards/NNNNNN.tar`` images), runs the
analysis backends on every image through the shared shard machinery (measured rows go to
``DIR/verify/shards``, so a re-run resumes and the generated shards are never touched), then writes

* ``DIR/verify.parquet``: every planned column plus ``face_found``, ``measured_yaw/pitch/roll``,
  ``pose_error`` (max |measured - planned| over the three angles, degrees), ``landmark_nme`` (mean
  2D landmark distance to the planned landmarks / planned outer-eye-corner distance),
  ``measured_emotion/valence/arousal/emotion_probs``, ``identity_embedding``, ``identity_similarity``
  and ``rejected`` / ``reject_reason`` (always filled; thresholds only applied with ``--reject``);
* ``DIR/verify_report.json``: pose RMSE, landmark NME, emotion accuracy and V/A RMSE (rows whose
  control set switched that branch on), identity similarity of same-identity vs. impostor pairs.

Identity references: with ArcFace, the similarity of each image to its planned identity vector
(``identities.npy``, ArcFace space); with dlib (128-d, other space), to the mean embedding of the other
images planned for the same identity.

Planned values come from the generated labels' ``target_*`` columns (bare names in datasets written
before the rename); the in-loop measurements of a `verify:` manifest are replaced by verify's own.
The measuring itself is `facegen.analysis.measure.measure_faces`, shared with in-loop verification.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facegen.analysis.base import unknown_emotion
from facegen.analysis.images import ImageRejected, decode_image
from facegen.analysis.measure import EYE_OUTER, Estimators, FaceMeasurement, landmark_nme, measure_faces  # noqa: F401  (EYE_OUTER, landmark_nme re-exported)
from facegen.analysis.models import resolve_models_dir
from facegen.analysis.registry import backend_class
from facegen.errors import FacegenError
from facegen.io.fs import Location, normalize_url
from facegen.io.lock import read_lock
from facegen.io.reader import ShardReader
from facegen.io.shards import SHARDS_DIR
from facegen.labels import MEASURED_COLUMNS, NUM_EMOTIONS, NUM_LANDMARKS, generated_name
from facegen.runner import Distributor, InProcessDistributor, Sample, SampleFailure, ShardTask, WorkUnit, run_shards, units_from_table
from facegen.runner.finalize import collect_labels

VERIFY_DIR = "verify"
VERIFY_TABLE = "verify.parquet"
VERIFY_REPORT = "verify_report.json"
FORMAT_VERSION = 1
MAX_PAIRS = 20000

MEASURED_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("shard", pa.int32()),
        pa.field("face_found", pa.bool_()),
        pa.field("measured_yaw", pa.float32()),
        pa.field("measured_pitch", pa.float32()),
        pa.field("measured_roll", pa.float32()),
        pa.field("measured_landmarks", pa.list_(pa.float32())),  # 478*3 normalised to the image, [] if no face
        pa.field("measured_emotion", pa.int8()),
        pa.field("measured_valence", pa.float32()),
        pa.field("measured_arousal", pa.float32()),
        pa.field("measured_emotion_probs", pa.list_(pa.float32(), NUM_EMOTIONS)),
        pa.field("identity_embedding", pa.list_(pa.float32())),  # [] if no face
        pa.field("verify_error", pa.string()),  # why nothing was measured ("" when measured)
    ]
)


@dataclass(frozen=True)
class VerifyConfig:
    dataset: str  # a local folder or an fsspec URL (``s3://bucket/ds``), like `balance --out`
    identity_backend: str = "auto"
    #: "auto": synthface for synthface datasets, else the first of emonet / hsemotion whose weights exist, else none
    emotion_backend: str = "auto"
    #: "auto": ``synthface`` for datasets made by a synthface model (then identity / emotion "auto"
    #: also mean synthface), else ``mediapipe``.
    landmark_backend: str = "auto"
    models_dir: str | None = None
    reject: bool = False
    max_pose_error: float = 15.0
    min_identity_similarity: float | None = None

    def validate(self) -> "VerifyConfig":
        url = normalize_url(self.dataset)
        root = Location(url)
        if not root.exists("labels.parquet") or not root.exists(SHARDS_DIR):
            raise FacegenError("not a finished `facegen balance` output (needs labels.parquet and shards/)", where=url)
        models = resolve_models_dir(self.models_dir).resolve()
        landmarks = self.landmark_backend
        if landmarks == "auto":
            landmarks = "synthface" if _made_by_synthface(root) else "mediapipe"
        backend_class(landmarks, "landmarks")  # unknown names fail here, in one line
        identity = self.identity_backend
        emotion = self.emotion_backend
        if landmarks == "synthface":
            identity = "synthface" if identity == "auto" else identity
            emotion = "synthface" if emotion == "auto" else emotion
        if emotion == "auto":
            emotion = next(
                (c for c in ("emonet", "hsemotion") if all(f.locate(models) for f in backend_class(c, "emotion").model_files())),
                "none",
            )
        if identity == "auto":
            arc = backend_class("arcface", "identity").model_files()
            identity = "arcface" if all(f.locate(models) for f in arc) else "dlib"
        for kind, name in (("identity", identity), ("emotion", emotion)):
            for f in backend_class(name, kind).model_files():
                f.require(models)
        if identity == "none":
            raise FacegenError("verify needs an identity backend: arcface or dlib")
        if "synthface" in (landmarks, identity, emotion):
            from facegen.synthface.estimator import load_estimator

            load_estimator()  # an unreadable estimator file fails here, in one line, before verify/ is written
        if self.max_pose_error <= 0:
            raise FacegenError("--max-pose-error must be > 0")
        return VerifyConfig(**{
            **asdict(self), "dataset": url, "identity_backend": identity, "emotion_backend": emotion,
            "landmark_backend": landmarks, "models_dir": str(models),
        })


class VerifyWorker:
    """Measures each generated image of a shard (worker protocol of `facegen.runner`), in batches of
    `BATCH` through the shared measuring path (`facegen.analysis.measure.measure_faces`)."""

    BATCH = 32

    def __init__(self, config: VerifyConfig) -> None:
        self.config = config
        self.estimators = Estimators.load(
            pose=config.landmark_backend, landmarks=config.landmark_backend, emotion=config.emotion_backend,
            identity=config.identity_backend, models_dir=config.models_dir,
        )  # fmt: skip

    def process(self, unit: WorkUnit) -> Iterator[Sample | SampleFailure]:
        reader = ShardReader.of(Location(self.config.dataset), unit.shard)
        rows = unit.rows.to_pylist()
        with reader:
            for start in range(0, len(rows), self.BATCH):
                chunk = rows[start : start + self.BATCH]
                images: list[np.ndarray] = []
                errors: dict[int, str] = {}
                for i, row in enumerate(chunk):
                    key = row["key"]
                    try:
                        ext = row.get("image_format") or "jpg"
                        if ext not in reader.exts(key):
                            raise ImageRejected("missing", f"no image for {key} in {reader.rel.rpartition('/')[2]}")
                        images.append(decode_image(reader.read(key, ext)))
                    except ImageRejected as rej:
                        errors[i] = str(rej)
                found = iter(measure_faces(images, self.estimators))
                for i, row in enumerate(chunk):
                    m = FaceMeasurement(False, error=errors[i]) if i in errors else next(found)
                    if not m.face_found and i not in errors:
                        m.error = str(ImageRejected("no-face", m.error))
                    yield self._sample(unit.shard, row["key"], m)

    @staticmethod
    def _sample(shard: int, key: str, m: FaceMeasurement) -> Sample:
        emo = m.emotion if m.face_found else unknown_emotion()
        measured: dict[str, Any] = {
            "key": key, "shard": shard, "face_found": m.face_found, "verify_error": m.error,
            "measured_yaw": m.yaw, "measured_pitch": m.pitch, "measured_roll": m.roll,
            "measured_landmarks": m.landmarks.reshape(-1) if m.landmarks is not None and m.face_found else np.zeros(0, np.float32),
            "identity_embedding": m.embedding if m.embedding is not None and m.face_found else np.zeros(0, np.float32),
            "measured_emotion": emo.emotion, "measured_valence": emo.valence, "measured_arousal": emo.arousal,
            "measured_emotion_probs": emo.probs,
        }  # fmt: skip
        meta = {k: measured[k] for k in ("face_found", "measured_yaw", "measured_pitch", "measured_roll", "measured_emotion", "verify_error")}
        meta = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in meta.items()}
        return Sample(key, {"json": json.dumps(meta, sort_keys=True).encode()}, measured)


# ----------------------------------------------------------------------------------------- metrics


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d**2))) if d.size else math.nan


def _stats(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"n": 0}
    return {"n": int(v.size), "mean": float(v.mean()), "p05": float(np.percentile(v, 5)), "p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}


def pair_similarities(embeddings: np.ndarray, identities: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of same-identity pairs (all, up to MAX_PAIRS) and of impostor pairs
    (random different-identity pairs, as many as same pairs but >= 1000 when possible)."""
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    ids = np.asarray(identities)
    same_i, same_j = [], []
    for ident in np.unique(ids):
        idx = np.flatnonzero(ids == ident)
        if len(idx) > 1:
            a, b = np.triu_indices(len(idx), k=1)
            same_i.append(idx[a])
            same_j.append(idx[b])
    si = np.concatenate(same_i) if same_i else np.zeros(0, int)
    sj = np.concatenate(same_j) if same_j else np.zeros(0, int)
    rng = np.random.default_rng(seed)
    if len(si) > MAX_PAIRS:
        pick = rng.choice(len(si), MAX_PAIRS, replace=False)
        si, sj = si[pick], sj[pick]
    same = (e[si] * e[sj]).sum(1)
    impostor = np.zeros(0)
    if len(np.unique(ids)) > 1:
        n = min(MAX_PAIRS, max(len(same), 1000))
        a, b = rng.integers(0, len(ids), n), rng.integers(0, len(ids), n)
        keep = ids[a] != ids[b]
        impostor = (e[a[keep]] * e[b[keep]]).sum(1)
    return same, impostor


# ------------------------------------------------------------------------------------------- driver


@dataclass
class VerifyResult:
    table_path: str  # DATASET/verify.parquet (a path, or a URL for fsspec datasets)
    report_path: str  # DATASET/verify_report.json
    report: dict[str, Any]


def _planned_landmarks(root: Location, labels: pa.Table) -> np.ndarray:
    """(N, 478, 3) the landmarks each row's landmark image was rendered from (NaN where unknown)."""
    from facegen.conditions.render import posed_landmarks
    from facegen.conditions.template import neutral_template

    exemplar = labels.column("exemplar").to_numpy().astype(np.int64)
    base = np.broadcast_to(neutral_template(), (labels.num_rows, NUM_LANDMARKS, 3)).astype(np.float64).copy()
    if (exemplar >= 0).any():
        bank = _exemplar_landmarks(root)
        if bank is None or exemplar.max() >= len(bank):
            base[exemplar >= 0] = np.nan
        else:
            base[exemplar >= 0] = bank[exemplar[exemplar >= 0]]
    yaw, pitch, roll = (_target(labels, c).astype(np.float64) for c in ("yaw", "pitch", "roll"))
    return posed_landmarks(base, yaw, pitch, roll)


def _exemplar_landmarks(root: Location) -> np.ndarray | None:
    """The manifest's exemplar bank landmarks, found through the dataset's manifest.lock.yaml."""
    lock = read_lock(root)
    if lock is None:
        return None
    bank = (((lock.get("manifest") or {}).get("targets") or {}).get("expression") or {}).get("exemplars")
    if not bank:
        return None
    candidates = [Path(bank)]
    if lock.get("manifest_source"):
        candidates.append(Path(lock["manifest_source"]).parent / bank)
    for path in candidates:
        if path.is_file():
            from facegen.conditions.exemplars import load_exemplar_bank

            return load_exemplar_bank(path).landmarks
    return None


def _fixed(table: pa.Table, column: str, width: int) -> np.ndarray:
    arr = table.column(column).combine_chunks()
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), width).astype(np.float64)


def _ragged(table: pa.Table, column: str, width: int) -> np.ndarray:
    """(N, width) from a list column whose cells are [] (-> NaN row) or `width` long."""
    out = np.full((table.num_rows, width), np.nan)
    for i, cell in enumerate(table.column(column).to_pylist()):
        if cell:
            out[i] = cell
    return out


def _weights_fingerprint(config: VerifyConfig) -> str:
    """The sha256 of the weight files the measuring backends load: other weights, other measurements, so a
    re-run with another estimator re-measures instead of resuming from the old one's shards."""
    from facegen.analysis.measure import estimator_weights

    names = {"landmarks": config.landmark_backend, "identity": config.identity_backend, "emotion": config.emotion_backend}
    return json.dumps(estimator_weights(names, config.models_dir), sort_keys=True) + "\n"


def run_verify(config: VerifyConfig, distributor: Distributor | None = None, *, progress: bool = True) -> VerifyResult:
    """Measure every generated image of `config.dataset`; write verify.parquet + verify_report.json."""
    started = time.perf_counter()
    config = config.validate()
    root = Location(config.dataset)
    labels = _read_parquet(root, "labels.parquet")
    labels = labels.sort_by([("shard", "ascending"), ("key", "ascending")])
    if labels.num_rows == 0:
        raise FacegenError("labels.parquet has no rows: nothing to verify", where=root.url)
    rows = labels.select([c for c in ("key", "shard", "image_format") if c in labels.column_names])
    fp_src = json.dumps({"v": FORMAT_VERSION, "identity": config.identity_backend, "emotion": config.emotion_backend,
                         "landmarks": config.landmark_backend})
    fp_src += _weights_fingerprint(config)
    fp_src += "\n".join(labels.column("key").to_pylist())
    verify_root = root.child(VERIFY_DIR)
    task = ShardTask(
        functools.partial(VerifyWorker, config),
        verify_root.url,
        hashlib.sha256(fp_src.encode()).hexdigest()[:16],
        label_schema=MEASURED_SCHEMA,
        extra_stats={"command": "verify"},
    )
    summary = run_shards(units_from_table(rows), task, distributor or InProcessDistributor(), progress=progress, description="verifying")
    if summary.failed:
        raise FacegenError(f"{len(summary.failed)} shard(s) could not be verified (e.g. {next(iter(summary.failed.values()))}); re-run to resume")
    measured = collect_labels(verify_root, list(summary.done), MEASURED_SCHEMA)
    measured = measured.sort_by([("shard", "ascending"), ("key", "ascending")])
    if measured.column("key").to_pylist() != labels.column("key").to_pylist():
        raise FacegenError("verify shards do not match labels.parquet; delete DIR/verify and re-run", where=root.url)

    table, report = _compare(root, config, labels, measured)
    root.write_parquet_atomic(VERIFY_TABLE, table)
    report["seconds"] = time.perf_counter() - started
    root.write_text_atomic(VERIFY_REPORT, json.dumps(report, indent=1, sort_keys=True))
    return VerifyResult(root.child(VERIFY_TABLE).url, root.child(VERIFY_REPORT).url, report)


def _made_by_synthface(root: Location) -> bool:
    """Whether labels.parquet says a synthface model made the images (its `model_id`)."""
    try:
        with root.open("labels.parquet", "rb") as f:
            schema = pq.read_schema(f)
            if "model_id" not in schema.names:
                return False
        with root.open("labels.parquet", "rb") as f:
            ids = pq.read_table(f, columns=["model_id"]).column("model_id").unique().to_pylist()
    except (OSError, pa.ArrowInvalid):
        return False
    return any(str(i).startswith("synthface") for i in ids)


def _read_parquet(root: Location, rel: str, **options: Any) -> pa.Table:
    with root.open(rel, "rb") as f:
        return pq.read_table(f, **options)


def _target(labels: pa.Table, plan_name: str) -> np.ndarray:
    """A planned value per row: the ``target_*`` column of generated labels (bare name in format-1 datasets)."""
    return labels.column(generated_name(labels.column_names, plan_name)).to_numpy(zero_copy_only=False)


def _compare(root: Location, config: VerifyConfig, labels: pa.Table, measured: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
    # verify's own measurements replace the in-loop ones of the generated labels (same column names)
    labels = labels.drop_columns([c for c in MEASURED_COLUMNS if c in labels.column_names])
    n = labels.num_rows
    found = measured.column("face_found").to_numpy(zero_copy_only=False).astype(bool)
    controls = labels.column("controls").to_pylist() if "controls" in labels.column_names else ["id+lmk+emo"] * n
    lmk_on = np.array(["lmk" in c for c in controls])
    emo_on = np.array(["emo" in c for c in controls])

    planned_pose = np.stack([_target(labels, c).astype(np.float64) for c in ("yaw", "pitch", "roll")], 1)
    measured_pose = np.stack([measured.column(f"measured_{c}").to_numpy(zero_copy_only=False).astype(np.float64) for c in ("yaw", "pitch", "roll")], 1)
    pose_error = np.abs(measured_pose - planned_pose).max(1)

    nme = np.full(n, np.nan)
    meas_lmk = _ragged(measured, "measured_landmarks", NUM_LANDMARKS * 3).reshape(n, NUM_LANDMARKS, 3)
    if found.any():
        planned_lmk = _planned_landmarks(root, labels)
        nme[found] = landmark_nme(meas_lmk[found], planned_lmk[found])

    m_emotion = measured.column("measured_emotion").to_numpy(zero_copy_only=False).astype(np.int64)
    m_val = measured.column("measured_valence").to_numpy(zero_copy_only=False).astype(np.float64)
    m_aro = measured.column("measured_arousal").to_numpy(zero_copy_only=False).astype(np.float64)
    p_emotion = _target(labels, "emotion").astype(np.int64)

    # Identity similarity to a reference: planned ArcFace vector, or leave-one-out centroid (dlib).
    dim = backend_class(config.identity_backend, "identity").dim  # type: ignore[attr-defined]
    emb = _ragged(measured, "identity_embedding", dim)
    has_emb = np.isfinite(emb).all(1)
    ident = labels.column("identity").to_numpy()
    similarity = np.full(n, np.nan)
    planned_space = getattr(backend_class(config.identity_backend, "identity"), "planned_space", False)
    if planned_space and root.exists("identities.npy"):
        ref = np.load(io.BytesIO(root.read_bytes("identities.npy")), allow_pickle=False).astype(np.float64)
        ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
        identity_class = backend_class(config.identity_backend, "identity")
        sims = identity_class.similarity_matrix(emb[has_emb], ref)  # type: ignore[attr-defined]
        similarity[has_emb] = sims[np.arange(int(has_emb.sum())), ident[has_emb]]
        reference = "planned identity vector (identities.npy)"
    else:
        for i in np.flatnonzero(has_emb):
            others = has_emb & (ident == ident[i])
            others[i] = False
            if others.any():
                c = emb[others].mean(0)
                similarity[i] = float(emb[i] @ c / max(np.linalg.norm(c), 1e-12))
        reference = "mean embedding of the other images of the same planned identity"
    same, impostor = pair_similarities(emb[has_emb], ident[has_emb]) if has_emb.sum() > 1 else (np.zeros(0), np.zeros(0))

    threshold = config.min_identity_similarity
    if threshold is None:
        threshold = float(backend_class(config.identity_backend, "identity").match_threshold)  # type: ignore[attr-defined]
    reasons = []
    for i in range(n):
        why = []
        if not found[i]:
            why.append("no-face")
        else:
            if lmk_on[i] and pose_error[i] > config.max_pose_error:
                why.append("pose")
            if np.isfinite(similarity[i]) and similarity[i] < threshold:
                why.append("identity")
        reasons.append(",".join(why))
    rejected = np.array([bool(r) for r in reasons]) if config.reject else np.zeros(n, bool)
    if not config.reject:
        reasons = [""] * n

    measured_cols = measured.drop_columns(["key", "shard", "verify_error"])
    table = labels
    for name in measured_cols.column_names:
        table = table.append_column(name, measured_cols.column(name))
    extra = {
        "verify_error": measured.column("verify_error"),
        "pose_error": pa.array(pose_error, pa.float32()),
        "landmark_nme": pa.array(nme, pa.float32()),
        "identity_similarity": pa.array(similarity, pa.float32()),
        "rejected": pa.array(rejected, pa.bool_()),
        "reject_reason": pa.array(reasons, pa.string()),
    }
    for name, col in extra.items():
        table = table.append_column(name, col)

    emo_rows = found & emo_on & (m_emotion >= 0)
    lmk_rows = found & lmk_on
    report: dict[str, Any] = {
        "samples": n,
        "faces_found": int(found.sum()),
        "identity_backend": config.identity_backend,
        "emotion_backend": config.emotion_backend,
        "landmark_backend": config.landmark_backend,
        "pose_rmse_deg": {
            "rows": int(lmk_rows.sum()),
            **{a: rmse(measured_pose[lmk_rows, k], planned_pose[lmk_rows, k]) for k, a in enumerate(("yaw", "pitch", "roll"))},
        },
        "landmark_nme": {"rows": int(lmk_rows.sum()), **_stats(nme[lmk_rows])},
        "identity": {
            "reference": reference,
            "similarity_to_reference": _stats(similarity),
            "same_identity_pairs": _stats(same),
            "impostor_pairs": _stats(impostor),
            "threshold": threshold,
        },
        "rejected": int(rejected.sum()),
        "reject_reasons": {r: int(sum(r in x.split(",") for x in reasons)) for r in ("no-face", "pose", "identity")} if config.reject else {},
    }
    if config.emotion_backend != "none":
        report["emotion"] = {
            "rows": int(emo_rows.sum()),
            "accuracy": float((m_emotion[emo_rows] == p_emotion[emo_rows]).mean()) if emo_rows.any() else math.nan,
            "valence_rmse": rmse(m_val[emo_rows], _target(labels, "valence")[emo_rows]),
            "arousal_rmse": rmse(m_aro[emo_rows], _target(labels, "arousal")[emo_rows]),
        }
    return table, report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of a verify report."""

    def f(x: Any) -> str:
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"

    p, lm, idr = report["pose_rmse_deg"], report["landmark_nme"], report["identity"]
    lines = [
        f"estimators: landmarks {report.get('landmark_backend', 'mediapipe')}, identity {report['identity_backend']}, "
        f"emotion {report['emotion_backend']}",
        f"faces found: {report['faces_found']} / {report['samples']}",
        f"pose RMSE (deg, {p['rows']} rows with landmark control): yaw {f(p['yaw'])}  pitch {f(p['pitch'])}  roll {f(p['roll'])}",
        f"landmark NME: mean {f(lm.get('mean'))}  median {f(lm.get('p50'))}",
    ]
    if "emotion" in report:
        e = report["emotion"]
        lines.append(f"emotion ({e['rows']} rows with emotion control): accuracy {f(e['accuracy'])}  valence RMSE {f(e['valence_rmse'])}  arousal RMSE {f(e['arousal_rmse'])}")
    else:
        lines.append("emotion: not measured (no emotion backend; see `facegen weights check`)")
    s, im = idr["same_identity_pairs"], idr["impostor_pairs"]
    lines.append(f"identity ({report['identity_backend']}): same-identity mean {f(s.get('mean'))} (n={s.get('n', 0)})  impostor mean {f(im.get('mean'))} (n={im.get('n', 0)})")
    lines.append(f"identity similarity to reference: mean {f(idr['similarity_to_reference'].get('mean'))}; threshold {f(idr['threshold'])}")
    if report.get("reject_reasons"):
        lines.append(f"rejected {report['rejected']}: " + ", ".join(f"{k} {v}" for k, v in report["reject_reasons"].items()))
    return "\n".join(lines)
