"""A consistency reward for the control modules: measure the one-step clean prediction, penalise what
it does not show.

Eq. 4 rewards a control branch only by the pixels it explains, and an expression moves a few pixels of a
small face: the synthface runs measured the emotion branch carrying < 0.5% of the loss and leaving
emotion at chance. ControlNet++ (Li et al., ECCV 2024) closes that gap with a *cycle-consistency reward*:
take the model's one-step estimate of the clean image, x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
decode it, run a frozen, differentiable estimator on it and penalise the distance between what the
estimator reads and the condition that was asked for. The gradient flows back through the estimator and
the decoder into the trained parts, so the branch is told directly which way its tokens must move the
face.

Terms (each a weight in :class:`facegen.train.config.RewardConfig`; rows whose timestep lies outside the
reward's range contribute nothing):

- ``emotion``: cross-entropy of the estimator's emotion logits against the target's emotion
  probabilities, on rows whose emotion or landmark branch is on (the landmark image carries the target's
  expression, so both condition sets ask for its emotion);
- ``pose``: mean squared error of yaw / pitch / roll (in units of 30 degrees) on rows with the landmark
  branch on;
- ``identity``: 1 - cosine between the estimator's identity embedding and the ID condition, every row;
  with ``identity_space="observable"`` the cosine is taken on the standardised identity features, each
  weighted by the square root of the estimator's held-out R^2 for it (the weighting `facegen verify` ranks
  identities with). In the 512-d embedding every feature weighs the same, so features a 64-px face does not
  show (the estimator reads them as noise) dilute the gradient of those it does.

The estimator must not be the instrument that later measures the model: a model trained against an
estimator learns that estimator's blind spots as well as the face. The synthface recipe trains a
separate *reward estimator* (other identities, other seed) and measures with the shipped one.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from facegen.labels import NUM_EMOTIONS


class ConsistencyReward(nn.Module):
    """A frozen synthface estimator + the reward terms; `forward(images, emotions, poses, id_embeds, switches)`
    -> (weighted loss, unweighted terms present in the batch)."""

    def __init__(
        self, weights: str, *, emotion: float, pose: float, identity: float, identity_space: str = "embedding"
    ) -> None:
        super().__init__()
        from facegen.synthface.estimator import POSE_SCALE, load_estimator
        from facegen.synthface.params import embedding_projection

        runner = load_estimator(weights)
        # a private copy: the cached runner serves `measure` elsewhere in this process and must stay untouched
        self.estimator = copy.deepcopy(runner.model).eval().requires_grad_(False)
        projection = torch.tensor(embedding_projection(), dtype=torch.float32)
        self.register_buffer("projection", projection, persistent=False)
        self.identity_space = identity_space
        if identity_space == "observable":
            if runner.reliability is None:
                raise ValueError(f"reward.identity_space 'observable' needs estimator weights that carry "
                                 f"identity_reliability; {weights} has none (retrain it with train-estimator)")
            weight = torch.tensor(runner.reliability, dtype=torch.float32).clamp(0.0, 1.0).sqrt()
            self.register_buffer("feature_weight", weight, persistent=False)
            self.register_buffer("unprojection", torch.linalg.pinv(projection), persistent=False)
        elif identity_space != "embedding":
            raise ValueError(f"reward.identity_space must be 'embedding' or 'observable', got {identity_space!r}")
        self.pose_scale = POSE_SCALE
        self.weights = {"emotion": emotion, "pose": pose, "identity": identity}

    def train(self, mode: bool = True) -> ConsistencyReward:
        super().train(mode)
        self.estimator.eval()  # BatchNorm keeps its running statistics: the estimator is a fixed instrument
        return self

    def forward(
        self, images: torch.Tensor, emotions: torch.Tensor, poses: torch.Tensor | None, id_embeds: torch.Tensor,
        switches: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`images` (B, 3, H, W) in [-1, 1] (decoded clean predictions); the rest are the batch's rows."""
        x = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        if x.shape[-2:] != (64, 64):
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        out = self.estimator(x)
        lmk_on, emo_on = switches[:, 0] > 0.5, switches[:, 1] > 0.5
        zero = out["emotion"].sum() * 0.0  # keeps the graph connected when a term has no rows
        parts: dict[str, torch.Tensor] = {}
        if self.weights["emotion"]:
            probs = emotions[:, -NUM_EMOTIONS:].float()
            probs = probs / probs.sum(1, keepdim=True).clamp_min(1e-8)
            ce = -(probs * F.log_softmax(out["emotion"].float(), dim=1)).sum(1)
            _add_masked_mean(parts, "emotion", ce, lmk_on | emo_on)
        if self.weights["pose"]:
            if poses is None:
                raise ValueError("the pose reward needs the target poses in the batch (StepInputs.poses)")
            err = ((out["pose"].float() - poses.float() / self.pose_scale) ** 2).mean(1)
            _add_masked_mean(parts, "pose", err, lmk_on)
        if self.weights["identity"]:
            parts["identity"] = (1.0 - self.identity_cosine(out["identity"].float(), id_embeds.float())).mean()
        loss = sum((self.weights[k] * v for k, v in parts.items()), zero)
        return loss, {k: v.detach() for k, v in parts.items()}

    def identity_cosine(self, features: torch.Tensor, id_embeds: torch.Tensor) -> torch.Tensor:
        """(B,) cosine between measured standardised identity features and the ID conditions, in the
        configured space."""
        if self.identity_space == "observable":
            measured = features * self.feature_weight
            target = (id_embeds @ self.unprojection) * self.feature_weight
            return (F.normalize(measured, dim=1) * F.normalize(target, dim=1)).sum(1)
        emb = F.normalize(features @ self.projection, dim=1)
        return (emb * F.normalize(id_embeds, dim=1)).sum(1)


def _add_masked_mean(parts: dict[str, torch.Tensor], name: str, values: torch.Tensor, mask: torch.Tensor) -> None:
    """parts[name] = the mean of `values` over the masked rows (absent when no row is masked)."""
    if bool(mask.any()):
        parts[name] = values[mask].mean()

