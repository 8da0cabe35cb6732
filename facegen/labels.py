"""The one label vocabulary and schema shared by plan, writer, verify, loaders and training.

Everything that names an emotion class, a control set or a plan/label column imports it from here.
"""

from __future__ import annotations

import pyarrow as pa

#: EmoNet's 8 classes, in EmoNet's output order (also the order of every 8-vector in facegen).
EMOTION_NAMES: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)
NUM_EMOTIONS = len(EMOTION_NAMES)

#: Length of the emotion condition vector: valence, arousal, then the 8 class probabilities.
EMOTION_VECTOR_DIM = 2 + NUM_EMOTIONS

#: Which FaceCrafter branches are switched on for a sample (a_LMK, a_EMO of eq. 1).
CONTROL_SETS: tuple[str, ...] = ("id", "id+lmk", "id+emo", "id+lmk+emo")


def control_flags(controls: str) -> tuple[bool, bool]:
    """`"id+lmk"` -> (use_lmk=True, use_emo=False)."""
    if controls not in CONTROL_SETS:
        raise ValueError(f"unknown control set {controls!r}; expected one of {CONTROL_SETS}")
    return "lmk" in controls, "emo" in controls


#: One row per image to generate. `plan_samples` writes it, the shard writer copies it into each
#: shard's Parquet (adding generation columns), and loaders read it.
PLAN_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # webdataset key: no dots, sortable, unique
        pa.field("index", pa.int64(), nullable=False),  # row number in the plan
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("identity", pa.int32(), nullable=False),  # row in the plan's identity table
        pa.field("seed", pa.int64(), nullable=False),  # per-sample noise seed
        pa.field("emotion", pa.int8(), nullable=False),  # index into EMOTION_NAMES
        pa.field("emotion_name", pa.string(), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
        pa.field("emotion_probs", pa.list_(pa.float32(), NUM_EMOTIONS), nullable=False),
        pa.field("yaw", pa.float32(), nullable=False),  # degrees; + = nose points toward image right (+x)
        pa.field("pitch", pa.float32(), nullable=False),  # degrees; + = nose points up (-y in image)
        pa.field("roll", pa.float32(), nullable=False),  # degrees; + = head tilts clockwise in the image
        pa.field("exemplar", pa.int32(), nullable=False),  # exemplar-bank row, -1 = neutral template
        pa.field("controls", pa.string(), nullable=False),  # one of CONTROL_SETS
    ]
)

#: Plan columns renamed in every GENERATED output (shard Parquet + JSON, labels.parquet, rejects.parquet):
#: there they are the values the image was *asked* for, never a measurement, so they carry a ``target_``
#: prefix next to the ``measured_*`` columns. Plan files (plan.parquet), EXTRACT_SCHEMA and training data
#: keep the bare names.
TARGET_RENAMES: dict[str, str] = {
    "emotion": "target_emotion",
    "emotion_name": "target_emotion_name",
    "valence": "target_valence",
    "arousal": "target_arousal",
    "emotion_probs": "target_emotion_probs",
    "yaw": "target_yaw",
    "pitch": "target_pitch",
    "roll": "target_roll",
}

#: Shard Parquet / labels.parquet / rejects.parquet rows: the plan row (targets renamed, see
#: TARGET_RENAMES), how the image was made, and what the in-loop estimators measured on it
#: (manifest `verify:`; NaN / -1 / "" / False when not measured).
GENERATED_SCHEMA = pa.schema(
    [f.with_name(TARGET_RENAMES.get(f.name, f.name)) for f in PLAN_SCHEMA]
    + [
        pa.field("round", pa.int16(), nullable=False),  # verification round that made it (0 = first)
        pa.field("image_format", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("steps", pa.int32(), nullable=False),
        pa.field("scheduler", pa.string(), nullable=False),
        pa.field("guidance_id", pa.float32(), nullable=False),
        pa.field("guidance_lmk", pa.float32(), nullable=False),
        pa.field("guidance_emo", pa.float32(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("measured", pa.bool_(), nullable=False),  # the estimators ran on this image
        pa.field("face_detected", pa.bool_(), nullable=False),
        pa.field("measured_yaw", pa.float32(), nullable=False),  # degrees, pose convention as target_yaw
        pa.field("measured_pitch", pa.float32(), nullable=False),
        pa.field("measured_roll", pa.float32(), nullable=False),
        pa.field("landmark_nme", pa.float32(), nullable=False),  # vs the target landmarks / outer-eye distance
        pa.field("measured_emotion", pa.int8(), nullable=False),  # -1 = not measured
        pa.field("measured_emotion_name", pa.string(), nullable=False),  # "" = not measured
        pa.field("measured_emotion_probs", pa.list_(pa.float32(), NUM_EMOTIONS), nullable=False),
        pa.field("measured_valence", pa.float32(), nullable=False),
        pa.field("measured_arousal", pa.float32(), nullable=False),
        pa.field("identity_similarity", pa.float32(), nullable=False),  # cosine to the identity's reference
        pa.field("accepted", pa.bool_(), nullable=False),  # within every tolerance (True when not checked)
        pa.field("reject_reason", pa.string(), nullable=False),  # "" when accepted, else e.g. "pose,emotion"
    ]
)

#: The columns of GENERATED_SCHEMA that estimators fill (everything else is known before generating).
MEASURED_COLUMNS: tuple[str, ...] = tuple(GENERATED_SCHEMA.names[GENERATED_SCHEMA.names.index("measured"):])


def generated_name(table_columns: "list[str] | tuple[str, ...]", plan_name: str) -> str:
    """The column holding plan column `plan_name` in a generated table: the ``target_`` name, or the bare
    name in datasets written before the rename (facegen dataset format 1)."""
    renamed = TARGET_RENAMES.get(plan_name, plan_name)
    return renamed if renamed in table_columns or plan_name not in table_columns else plan_name


def generated_to_plan(table: pa.Table) -> pa.Table:
    """Generated rows -> PLAN_SCHEMA rows (targets under their plan names again; other columns dropped)."""
    names = list(table.column_names)
    return pa.table({f.name: table.column(generated_name(names, f.name)).cast(f.type) for f in PLAN_SCHEMA}, schema=PLAN_SCHEMA)


#: MediaPipe face mesh with iris refinement.
NUM_LANDMARKS = 478
#: Width of an ArcFace identity embedding.
ID_EMBED_DIM = 512

#: One row per extracted real face (`facegen extract`): what training and the exemplar bank read.
#: Landmarks are MediaPipe-normalised to the stored face crop: x, y in [0, 1] of the crop, z in the
#: same unit as x (smaller = closer to the camera), flattened row-major (478 x 3).
EXTRACT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # input path or source-shard key
        pa.field("identity", pa.string(), nullable=False),  # folder name, or the file stem
        pa.field("identity_index", pa.int32(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), ID_EMBED_DIM), nullable=False),  # L2-normalised
        pa.field("landmarks", pa.list_(pa.float32(), NUM_LANDMARKS * 3), nullable=False),
        pa.field("yaw", pa.float32(), nullable=False),
        pa.field("pitch", pa.float32(), nullable=False),
        pa.field("roll", pa.float32(), nullable=False),
        pa.field("emotion", pa.int8(), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
        pa.field("emotion_probs", pa.list_(pa.float32(), NUM_EMOTIONS), nullable=False),
    ]
)

#: Exemplar bank (planner input): real landmark sets with the emotion measured on the same face.
EXEMPLAR_SCHEMA = pa.schema(
    [
        pa.field("exemplar", pa.int32(), nullable=False),
        pa.field("landmarks", pa.list_(pa.float32(), NUM_LANDMARKS * 3), nullable=False),
        pa.field("emotion", pa.int8(), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
        pa.field("emotion_probs", pa.list_(pa.float32(), NUM_EMOTIONS), nullable=False),
    ]
)

#: Photo suffixes read from folders (manifest identity folders, ID photo embedding); one tuple for both.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
