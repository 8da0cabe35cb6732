"""In-loop verification: the manifest's `verify:` section resolved once in the driver, and the measurer
each generation actor runs on every decoded batch (same process, no second pass over the tars).

    settings = resolve_verify(manifest, model_dir)            # driver: `auto` -> backend names, weights checked
    measurer = LoopMeasurer(settings, builder)                 # actor: loads the estimators once
    columns = measurer.measure(images, rows)                   # one dict of MEASURED_COLUMNS per row
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from facegen.errors import FacegenError
from facegen.labels import EMOTION_NAMES, NUM_EMOTIONS

#: Reject reasons, in the order they are listed in `reject_reason` ("pose,emotion").
REASONS = ("no-face", "pose", "landmarks", "emotion", "identity")


@dataclass(frozen=True)
class VerifySettings:
    """The resolved `verify:` section: concrete backend names (no `auto`), tolerances, budget."""

    mode: str = "off"  # off | measure | reject | regenerate
    pose: str = "none"
    landmarks: str = "none"
    emotion: str = "none"
    identity: str = "none"
    pose_deg: float | None = None
    #: `pose_stratum: match`: per stratified axis, the strata edges the measured angle must share with the target
    pose_strata: dict[str, list[float]] | None = None
    landmark_nme: float | None = None
    emotion_match: bool = False
    emotion_min_prob: float = 0.0
    identity_min_similarity: float | None = None
    max_rounds: int = 1
    max_total_factor: float = 1.0
    models_dir: str | None = None
    #: the synthface estimator file the driver resolved ($FACEGEN_SYNTHFACE_ESTIMATOR or the shipped one):
    #: actors measure with exactly it, wherever their environment points
    synthface_weights: str | None = None
    #: per attribute, the weight files its estimator loads (name + sha256): recorded in the run's lock
    estimator_weights: dict[str, list[dict[str, str]]] | None = None

    @property
    def measures(self) -> bool:
        return self.mode != "off"

    @property
    def drops_rejects(self) -> bool:
        """Whether images outside tolerance leave the dataset (reject / regenerate)."""
        return self.mode in ("reject", "regenerate")

    @property
    def rounds(self) -> int:
        return self.max_rounds if self.mode == "regenerate" else 1

    def estimators(self) -> dict[str, str]:
        return {"pose": self.pose, "landmarks": self.landmarks, "emotion": self.emotion, "identity": self.identity}

    def tolerances(self) -> dict[str, Any]:
        return {
            "pose_deg": self.pose_deg,
            "pose_stratum": "match" if self.pose_strata else "off",
            "landmark_nme": self.landmark_nme,
            "emotion": "match" if self.emotion_match else "off",
            "emotion_min_prob": self.emotion_min_prob,
            "identity_min_similarity": self.identity_min_similarity,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _made_by_synthface(manifest: Any, model_dir: Path) -> bool:
    if manifest.model == "synthface":
        return True
    try:
        from facegen.model.folder import read_model_info

        return str(read_model_info(model_dir).name).startswith("synthface")
    except FacegenError:
        return False


def resolve_verify(manifest: Any, model_dir: Path) -> VerifySettings:
    """The manifest's `verify:` with `auto` resolved and every estimator's weights present; a missing
    weight file or an `auto` that finds nothing for a checked tolerance is a one-line error naming the
    manifest line."""
    from facegen.analysis.measure import EstimatorChoiceError, estimator_weights, resolve_estimators, synthface_weights_path

    v = manifest.verify
    if v is None or v.mode == "off":
        return VerifySettings()
    t = v.tolerances
    checked = {
        "pose": t.pose_deg is not None or t.pose_stratum == "match",
        "landmarks": t.landmark_nme is not None,
        "emotion": t.emotion == "match" or t.emotion_min_prob > 0,
        "identity": t.identity_min_similarity is not None,
    }
    try:
        names, models = resolve_estimators(
            v.estimators.model_dump(), synthface=_made_by_synthface(manifest, model_dir), checked=checked, models_dir=v.models_dir
        )
    except EstimatorChoiceError as exc:
        raise manifest.error(("verify", "estimators", exc.attribute), str(exc)) from None
    if not any(n != "none" for n in names.values()):
        raise manifest.error(("verify", "estimators"), "every estimator is none, so nothing would be measured; name one or set mode: off")
    return VerifySettings(
        mode=v.mode,
        **names,
        pose_deg=t.pose_deg if names["pose"] != "none" else None,
        pose_strata=pose_strata(manifest) if t.pose_stratum == "match" and names["pose"] != "none" else None,
        landmark_nme=t.landmark_nme if names["landmarks"] != "none" else None,
        emotion_match=t.emotion == "match" and names["emotion"] != "none",
        emotion_min_prob=t.emotion_min_prob if names["emotion"] != "none" else 0.0,
        identity_min_similarity=t.identity_min_similarity if names["identity"] != "none" else None,
        max_rounds=v.max_rounds,
        max_total_factor=v.max_total_factor,
        models_dir=str(models),
        synthface_weights=synthface_weights_path(names),
        estimator_weights=estimator_weights(names, models),
    )


def pose_strata(manifest: Any) -> dict[str, list[float]] | None:
    """The `targets.pose` strata edges of every axis with a range (constant axes have no strata to match)."""
    from facegen.manifest.distributions import axis_bins

    out = {}
    for axis in ("yaw", "pitch", "roll"):
        edges = axis_bins(getattr(manifest.targets.pose, axis)).edges
        if edges[-1] > edges[0]:
            out[axis] = [float(e) for e in edges]
    return out or None


def stratum(value: float, edges: list[float]) -> int:
    """Index of the stratum [edges[k], edges[k+1]) holding `value` (the last one closed); -1 outside or NaN."""
    if not (edges[0] <= value <= edges[-1]):  # NaN fails both
        return -1
    return min(int(np.searchsorted(edges, value, side="right")) - 1, len(edges) - 2)


def unmeasured_columns() -> dict[str, Any]:
    """MEASURED_COLUMNS of an image nothing measured (verification off): kept, nothing checked."""
    return {
        "measured": False,
        "face_detected": False,
        "measured_yaw": math.nan,
        "measured_pitch": math.nan,
        "measured_roll": math.nan,
        "landmark_nme": math.nan,
        "measured_emotion": -1,
        "measured_emotion_name": "",
        "measured_emotion_probs": [math.nan] * NUM_EMOTIONS,
        "measured_valence": math.nan,
        "measured_arousal": math.nan,
        "identity_similarity": math.nan,
        "accepted": True,
        "reject_reason": "",
    }


@dataclass
class LoopMeasurer:
    """Loads the resolved estimators once per actor; `measure` turns a decoded batch + its plan rows
    into MEASURED_COLUMNS values (measurements, then the accept / reject judgement)."""

    settings: VerifySettings
    builder: Any  # facegen.conditions.builder.ConditionBuilder: target landmarks + reference identities
    estimators: Any = field(init=False)

    def __post_init__(self) -> None:
        from facegen.analysis.measure import Estimators

        s = self.settings
        if s.synthface_weights:
            from facegen.analysis.measure import pin_synthface_weights

            pin_synthface_weights(s.synthface_weights)
        self.estimators = Estimators.load(pose=s.pose, landmarks=s.landmarks, emotion=s.emotion, identity=s.identity, models_dir=s.models_dir)

    def measure(self, images: np.ndarray, rows: pa.Table) -> list[dict[str, Any]]:
        from facegen.analysis.measure import landmark_nme, measure_faces
        from facegen.conditions.render import posed_landmarks

        found = measure_faces(list(images), self.estimators)
        n = rows.num_rows
        nme = np.full(n, np.nan)
        with_points = [i for i, m in enumerate(found) if m.face_found and m.landmarks is not None]
        if with_points:
            sub = rows.take(with_points)
            base = self.builder.base_landmarks(sub.column("exemplar").to_numpy())
            target = posed_landmarks(base, *(sub.column(c).to_numpy().astype(np.float64) for c in ("yaw", "pitch", "roll")))
            nme[with_points] = landmark_nme(np.stack([found[i].landmarks for i in with_points]), target)
        similarity = np.full(n, np.nan)
        with_emb = [i for i, m in enumerate(found) if m.face_found and m.embedding is not None]
        if with_emb:
            ref = self.builder.id_embeds[rows.column("identity").to_numpy()[with_emb]]
            # the backend's own comparison (cosine; synthface: on the identity features an image shows)
            sims = self.estimators.identity.similarity_matrix(np.stack([found[i].embedding for i in with_emb]), ref)
            similarity[with_emb] = np.diagonal(sims)
        out = []
        for i, row in enumerate(rows.to_pylist()):
            m = found[i]
            emo = m.emotion
            measured_emotion = int(emo.emotion) if m.face_found and self.settings.emotion != "none" else -1
            cols = {
                "measured": True,
                "face_detected": bool(m.face_found),
                "measured_yaw": m.yaw,
                "measured_pitch": m.pitch,
                "measured_roll": m.roll,
                "landmark_nme": float(nme[i]),
                "measured_emotion": measured_emotion,
                "measured_emotion_name": EMOTION_NAMES[measured_emotion] if measured_emotion >= 0 else "",
                "measured_emotion_probs": [float(p) for p in emo.probs] if measured_emotion >= 0 else [math.nan] * NUM_EMOTIONS,
                "measured_valence": float(emo.valence) if measured_emotion >= 0 else math.nan,
                "measured_arousal": float(emo.arousal) if measured_emotion >= 0 else math.nan,
                "identity_similarity": float(similarity[i]),
            }
            reasons = judge(self.settings, row, cols)
            cols["accepted"] = not reasons
            cols["reject_reason"] = ",".join(reasons)
            out.append(cols)
        return out


def judge(s: VerifySettings, row: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """Reasons (REASONS order) why measurements `m` of plan row `row` are outside tolerance; [] = accepted.
    Pose and landmarks count on rows whose controls include lmk, emotion on rows with emo."""
    if not m["face_detected"]:
        return ["no-face"]
    controls = str(row.get("controls", "id+lmk+emo"))
    reasons = []
    if "lmk" in controls and s.pose_deg is not None:
        err = max(abs(m[f"measured_{a}"] - float(row[a])) for a in ("yaw", "pitch", "roll"))
        if not err <= s.pose_deg:  # NaN counts as outside
            reasons.append("pose")
    if "lmk" in controls and s.pose_strata and "pose" not in reasons:
        if any(stratum(m[f"measured_{a}"], e) != stratum(float(row[a]), e) for a, e in s.pose_strata.items()):
            reasons.append("pose")
    if "lmk" in controls and s.landmark_nme is not None and not m["landmark_nme"] <= s.landmark_nme:
        reasons.append("landmarks")
    if "emo" in controls and (s.emotion_match or s.emotion_min_prob > 0):
        target = int(row["emotion"])
        wrong = s.emotion_match and m["measured_emotion"] != target
        probs = m["measured_emotion_probs"]
        weak = s.emotion_min_prob > 0 and not probs[target] >= s.emotion_min_prob
        if wrong or weak:
            reasons.append("emotion")
    if s.identity_min_similarity is not None and not m["identity_similarity"] >= s.identity_min_similarity:
        reasons.append("identity")
    return reasons


__all__ = ["REASONS", "LoopMeasurer", "VerifySettings", "judge", "pose_strata", "resolve_verify", "stratum", "unmeasured_columns"]


def verification_summary(
    settings: VerifySettings,
    labels: pa.Table,
    rejects: pa.Table,
    *,
    plan_rows: int,
    failed_keys: list[str],
    rounds_run: int,
) -> dict[str, Any]:
    """The ``verification`` block of summary.json: mode, estimators, tolerances, budget, and per round how
    many images were made, kept and rejected; ``dropped`` = plan rows whose last image was rejected (not
    in the dataset, see rejects.parquet); ``shortfall`` = plan rows without an accepted image."""
    from facegen.runner.rounds import plan_key

    def per_round(table: pa.Table) -> dict[int, int]:
        if table.num_rows == 0:
            return {}
        values, counts = np.unique(table.column("round").to_numpy(), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    failed_by_round: dict[int, int] = {}
    for key in failed_keys:
        r = int(key.rsplit("_r", 1)[1]) if "_r" in key else 0
        failed_by_round[r] = failed_by_round.get(r, 0) + 1
    kept, rejected = per_round(labels), per_round(rejects)
    rounds = sorted(set(kept) | set(rejected) | set(failed_by_round) | {0})
    accepted = int(np.sum(labels.column("accepted").to_numpy(zero_copy_only=False))) if labels.num_rows else 0
    failed_plan = {plan_key(k) for k in failed_keys}
    dropped_idx: set[int] = set()
    if rejects.num_rows:  # plan rows with a reject and no kept image (the labels' index column, not a Python set of it)
        import pyarrow.compute as pc

        kept_mask = pc.is_in(rejects.column("index"), value_set=labels.column("index").combine_chunks()) if labels.num_rows else None
        kept_flags = kept_mask.to_pylist() if kept_mask is not None else [False] * rejects.num_rows
        dropped_idx = {i for i, k, in_labels in zip(rejects.column("index").to_pylist(), rejects.column("key").to_pylist(), kept_flags)
                       if not in_labels and plan_key(k) not in failed_plan}  # fmt: skip
    reasons = {r: 0 for r in REASONS}
    for table in (labels, rejects):
        if table.num_rows:  # distinct texts in order of first appearance, with their counts
            for entry in _value_counts(table.column("reject_reason")):
                for r in filter(None, str(entry["values"]).split(",")):
                    reasons[r] = reasons.get(r, 0) + int(entry["counts"])
    return {
        "mode": settings.mode,
        "counted_by": "measured" if settings.measures else "planned (not measured)",
        "estimators": settings.estimators(),
        "tolerances": settings.tolerances() if settings.measures else {},
        "max_rounds": settings.rounds,
        "max_total_factor": settings.max_total_factor,
        "budget_images": int(math.floor(settings.max_total_factor * plan_rows + 1e-9)) if settings.mode == "regenerate" else plan_rows,
        "rounds_run": rounds_run,
        "generated": sum(kept.values()) + sum(rejected.values()) + len(failed_keys),
        "accepted": accepted,
        "rejected": rejects.num_rows,
        "dropped": len(dropped_idx),
        "shortfall": max(0, plan_rows - accepted - len(failed_plan)),
        "per_round": [
            {"round": r, "generated": kept.get(r, 0) + rejected.get(r, 0) + failed_by_round.get(r, 0),
             "kept": kept.get(r, 0), "rejected": rejected.get(r, 0), "failed": failed_by_round.get(r, 0)}
            for r in rounds
        ],  # fmt: skip
        "reject_reasons": reasons if settings.measures else {},
    }


__all__ += ["verification_summary"]


def _value_counts(column: pa.ChunkedArray) -> list[dict[str, Any]]:
    """[{"values", "counts"}] of a column's distinct values, in order of first appearance."""
    import pyarrow.compute as pc

    return pc.value_counts(column.combine_chunks()).to_pylist()
