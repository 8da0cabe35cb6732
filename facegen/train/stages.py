"""What differs between training stages, in one table.

Stages, in recipe order (synthface trains all five; with Arc2Face weights only the last three):

- ``vae``: the autoencoder alone (reconstruction + KL), for a domain with no pre-trained VAE;
- ``base``: the identity-conditional model in Arc2Face's role — UNet + CLIP ID encoder from the ID
  embedding alone, with condition dropout so eq. 6's unconditional branch exists;
- ``pretrain-lmk`` / ``pretrain-emo``: one control module + its K/V, everything else frozen (paper 3.2);
- ``joint``: both modules + the ID encoder, intra-batch mixed conditioning and the AD loss (paper 3.3).

Everything stage-specific is read from :data:`STAGE_SPECS` (trainable parts, objective, switches, partner
rule, label needs, AD loss, condition dropout); no other module compares stage names. The unconditional
context of eq. 6 follows from ``condition_dropout``: a stage that trains it (``base``) re-captures it from
its trained encoder at export; every other stage keeps the input model's (stored, or captured from the
input encoder before the first step), so training the ID encoder in ``joint`` cannot move it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    """One stage's recipe parameters."""

    trainable: tuple[str, ...]  # top-level Trainee submodules that train
    objective: str  # "diffusion" | "autoencoder"
    switches: tuple[float, float] | None  # fixed (a_LMK, a_EMO); None = mixed per batch (joint)
    pairing: str  # partner rule: "self" | "lmk" | "emo"
    needs_emotion_labels: bool
    uses_ad_loss: bool = False
    condition_dropout: bool = False  # train the unconditional branch (ID context -> empty prompt)

    @property
    def mixed(self) -> bool:
        """Intra-batch mixed conditioning: switches drawn per replica, items replicated across the batch."""
        return self.switches is None

    @property
    def trains_identity_encoder(self) -> bool:
        return "identity_encoder" in self.trainable

    def branch_on(self, branch: int) -> bool:
        """Whether the stage ever switches branch 0 (LMK) / 1 (EMO) on."""
        return self.switches is None or self.switches[branch] > 0


STAGE_SPECS: dict[str, StageSpec] = {
    "vae": StageSpec(("vae",), "autoencoder", (0.0, 0.0), "self", False),
    "base": StageSpec(("unet", "identity_encoder"), "diffusion", (0.0, 0.0), "self", False, condition_dropout=True),
    "pretrain-lmk": StageSpec(("landmark",), "diffusion", (1.0, 0.0), "lmk", False),
    "pretrain-emo": StageSpec(("emotion",), "diffusion", (0.0, 1.0), "emo", True),
    "joint": StageSpec(("landmark", "emotion", "identity_encoder"), "diffusion", None, "lmk", True, uses_ad_loss=True),
}
STAGES: tuple[str, ...] = tuple(STAGE_SPECS)


def stage_spec(stage: str) -> StageSpec:
    return STAGE_SPECS[stage]
