#!/usr/bin/env bash
# Rebuild the shipped synthface preset and proxy estimator from scratch: render the training data; round 1
# (vae, base, pretrain-lmk, pretrain-emo, joint; training/synthface/*.yaml), written as a preset folder;
# round 2's base stage (training/synthface/round2/base.yaml) from it; round 3: fresh control modules of
# the current design (the landmark module's spatial prior) trained on round 2's base with the loss
# weightings that give them a signal (training/synthface/round3/*.yaml); round 4 retrains only the
# autoencoder's decoder of round 3's joint model (training/synthface/round4/decoder.yaml: the latents, UNet
# and control modules stay round 3's); round 5a trains round 4's base UNet + ID encoder 6,000 more steps and
# then the joint stage 800 more steps on it, both exporting an EMA of their weights
# (training/synthface/round5a/); round 5b trains round 5a's base 8,000 more steps (EMA from the start) and
# then the joint stage 800 more steps on it, continuing round 5a's joint modules
# (training/synthface/round5b/); ship round 5b's joint model.
# Round 2 exists because round 1's 1,800 base steps left the UNet far from converged, round 3 because
# round 2's control branches stayed inert, round 4 because round 3's decoder blurred eyes and lips (the
# wider autoencoder of training/synthface/planned/round5/ is planned, not run). This is the schedule the shipped weights went through. (Rounds
# 1-2 ran before the spatial prior existed; re-run today, round 1's landmark modules get it too, which
# changes round 1's joint ID encoder and so round 2's base slightly: a rebuild is equivalent, not
# bit-identical.) Everything goes to runs/synthface/ (git-ignored); every step resumes when re-run.
# Usage: scripts/build_synthface_model.sh [FACEGEN]   (default .venv/bin/facegen)
# Time on this 2-core machine: round 1 ~2 h, round 2's base ~1.1 h, round 3 ~45 min, round 4 ~15 min,
# round 5a ~70 min (base 6,000 steps at ~1.7 steps/s with both cores, joint 800 at ~1.4/s), round 5b
# ~1.6 h (base 8,000 steps at ~1.5 steps/s, joint 800 at ~1.45/s),
# estimator ~55 min (13 min of rendering at ~330 images/s, 12,000 steps at ~4.9 steps/s with both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
FACEGEN=${1:-.venv/bin/facegen}
R=runs/synthface
mkdir -p "$R"
$FACEGEN synthface render --n 64000 --identities 6400 --seed 0 --images-per-shard 2000 --out "$R/data/train"
test -f "$R/init/facegen.json" || $FACEGEN synthface init-model --seed 0 --out "$R/init"
# round 1
$FACEGEN train vae --config training/synthface/vae.yaml
$FACEGEN train base --config training/synthface/base.yaml
$FACEGEN train pretrain-lmk --config training/synthface/pretrain_lmk.yaml
$FACEGEN train pretrain-emo --config training/synthface/pretrain_emo.yaml
$FACEGEN train joint --config training/synthface/joint.yaml
test -f "$R/round1/preset/facegen.json" || $FACEGEN synthface ship --model "$R/joint/model" --out "$R/round1/preset"
# round 2: only its base stage feeds round 3 (its control stages, training/synthface/round2/pretrain_*.yaml
# and joint*.yaml, are kept as the record of the inert-branch run and are not re-run here)
$FACEGEN train base --config training/synthface/round2/base.yaml
# round 3 (stages 1 and 2 are independent, as are the joint stage and its AD ablation)
test -f "$R/controls_init/facegen.json" || $FACEGEN synthface init-model --seed 0 --out "$R/controls_init"
$FACEGEN train pretrain-lmk --config training/synthface/round3/pretrain_lmk.yaml
$FACEGEN train pretrain-emo --config training/synthface/round3/pretrain_emo.yaml
$FACEGEN train joint --config training/synthface/round3/joint.yaml
# the study's AD ablation: the same joint stage with lambda_AD = 0 (not shipped)
$FACEGEN train joint --config training/synthface/round3/joint_no_ad.yaml
# round 4: a sharper decoder behind round 3's encoder
$FACEGEN train vae --config training/synthface/round4/decoder.yaml
# the measuring instrument: the proxy estimator, evaluated on held-out identities
scripts/build_synthface_estimator.sh "$FACEGEN"
# round 5a: more base training (EMA from step 3,000), then the joint stage again on it (+ its AD ablation)
$FACEGEN train base --config training/synthface/round5a/base.yaml
$FACEGEN train joint --config training/synthface/round5a/joint.yaml
$FACEGEN train joint --config training/synthface/round5a/joint_no_ad.yaml
# round 5b: 8,000 more base steps (EMA from the start), then the joint stage again on it
$FACEGEN train base --config training/synthface/round5b/base.yaml
$FACEGEN train joint --config training/synthface/round5b/joint.yaml
# Round 5b was the shipped preset until 2026-12-07 (`facegen synthface ship --model "$R/round5b/joint/model"
# --configs training/synthface`); the pixel-space recipe's round 3 ships now (scripts/build_synthface_pixel.sh).
