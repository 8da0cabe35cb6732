"""Plan rows -> the tensors `FaceCrafterPipeline` takes (what the runner feeds straight in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from facegen.conditions.identities import IDENTITIES_FILE, Manifest
from facegen.errors import FacegenError
from facegen.labels import CONTROL_SETS, EMOTION_VECTOR_DIM, ID_EMBED_DIM, NUM_EMOTIONS


@dataclass(frozen=True)
class Conditions:
    """One batch of conditions in the model contract's shapes (float32 on CPU)."""

    id_embeds: torch.Tensor  # (B, 512) L2-normalised
    landmark_images: torch.Tensor  # (B, 3, S, S) in [0, 1]; rendered for every row (also when unused)
    emotions: torch.Tensor  # (B, 10): valence, arousal, 8 probabilities
    use_lmk: torch.Tensor  # (B,) bool
    use_emo: torch.Tensor  # (B,) bool
    landmark_uint8: np.ndarray  # (B, S, S, 3) the same images as uint8 (for store_landmark_image)


class ConditionBuilder:
    """Builds `Conditions` for plan rows: identity vectors from `identities.npy`, landmark images
    (exemplar or neutral template posed by the row's yaw/pitch/roll, then rendered at
    `landmark_image_size`), emotion vectors from the row, and the per-row control switches.
    Deterministic: the same rows always give the same tensors."""

    def __init__(self, plan_dir: str | Path, manifest: Manifest, landmark_image_size: int) -> None:
        from facegen.conditions.template import neutral_template

        path = Path(plan_dir) / IDENTITIES_FILE
        if not path.is_file():
            raise FacegenError(f"{IDENTITIES_FILE} not found; run `facegen plan` (or balance) to write the plan first", where=str(plan_dir))
        embeds = np.load(path, allow_pickle=False)
        if embeds.ndim != 2 or embeds.shape[1] != ID_EMBED_DIM:
            raise FacegenError(f"expected shape (N, {ID_EMBED_DIM}), got {embeds.shape}; re-run `facegen plan`", where=str(path))
        self.id_embeds = np.ascontiguousarray(embeds, dtype=np.float32)
        self.size = int(landmark_image_size)
        self.template = np.asarray(neutral_template(), dtype=np.float32)
        self.bank_landmarks: np.ndarray | None = None
        if manifest.targets.expression.exemplars is not None:
            from facegen.conditions.exemplars import load_exemplar_bank

            self.bank_landmarks = load_exemplar_bank(manifest.targets.expression.exemplars).landmarks

    def base_landmarks(self, exemplar: np.ndarray) -> np.ndarray:
        """(B, 478, 3) unposed landmark sets: bank rows, or the neutral template where exemplar < 0."""
        out = np.broadcast_to(self.template, (len(exemplar), *self.template.shape)).copy()
        use = exemplar >= 0
        if use.any():
            if self.bank_landmarks is None or exemplar.max() >= len(self.bank_landmarks):
                raise FacegenError("plan rows refer to exemplars the manifest's bank does not have; re-run `facegen plan` with this manifest")
            out[use] = self.bank_landmarks[exemplar[use]]
        return out

    def landmark_images(self, rows: pa.Table) -> np.ndarray:
        """(B, S, S, 3) uint8 rendered landmark images for the rows."""
        from facegen.conditions.render import posed_landmarks, render_landmark_images

        base = self.base_landmarks(rows.column("exemplar").to_numpy())
        yaw, pitch, roll = (rows.column(c).to_numpy().astype(np.float64) for c in ("yaw", "pitch", "roll"))
        return render_landmark_images(posed_landmarks(base, yaw, pitch, roll), self.size)

    def build(self, rows: pa.Table) -> Conditions:
        """Tensors for a batch of PLAN_SCHEMA rows."""
        identity = rows.column("identity").to_numpy()
        if len(identity) and (identity.min() < 0 or identity.max() >= len(self.id_embeds)):
            raise FacegenError("plan rows refer to identities missing from identities.npy; re-run `facegen plan`")
        images = self.landmark_images(rows)
        probs = pc.list_flatten(rows.column("emotion_probs").combine_chunks()).to_numpy(zero_copy_only=False)
        emotions = np.empty((rows.num_rows, EMOTION_VECTOR_DIM), dtype=np.float32)
        emotions[:, 0] = rows.column("valence").to_numpy()
        emotions[:, 1] = rows.column("arousal").to_numpy()
        emotions[:, 2:] = probs.reshape(-1, NUM_EMOTIONS)
        controls = rows.column("controls").to_pylist()
        unknown = set(controls) - set(CONTROL_SETS)
        if unknown:
            raise FacegenError(f"plan has unknown control sets {sorted(unknown)}; re-run `facegen plan`")
        use_lmk = torch.tensor(["lmk" in c for c in controls], dtype=torch.bool)
        use_emo = torch.tensor(["emo" in c for c in controls], dtype=torch.bool)
        return Conditions(
            id_embeds=torch.from_numpy(self.id_embeds[identity].copy()),
            landmark_images=torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous(),
            emotions=torch.from_numpy(emotions),
            use_lmk=use_lmk,
            use_emo=use_emo,
            landmark_uint8=images,
        )
