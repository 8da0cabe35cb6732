#!/usr/bin/env bash
# The pixel-space synthface recipe (training/synthface/pixel/), from scratch: render the training data,
# an untrained model with the fixed 2x resampling autoencoder (32x32x3 pixel latents), then the decoder
# refiner, the base model, the two control modules side by side (one core each) and the joint stage, then
# round 2 (more base training, the joint stage again), then round 3 (a reward estimator, the joint stage with
# the consistency reward), rounds 4-8 (more reward stages; round 8 puts the control modules back on the base's
# own, frozen ID encoder) and `synthface ship` (the package's preset). ~6.5 h on 2 cores.
# Everything goes to runs/synthface/ (git-ignored); every step resumes when re-run.
# Usage: scripts/build_synthface_pixel.sh [FACEGEN]   (default .venv/bin/facegen)
set -euo pipefail
cd "$(dirname "$0")/.."
FACEGEN=${1:-.venv/bin/facegen}
R=runs/synthface
P=training/synthface/pixel
mkdir -p "$R/pixel"
$FACEGEN synthface render --n 64000 --identities 6400 --seed 0 --images-per-shard 2000 --out "$R/data/train"
test -f "$R/pixel/init/facegen.json" || $FACEGEN synthface init-model --autoencoder resample2 --seed 0 --out "$R/pixel/init"
$FACEGEN train vae --config $P/refiner.yaml
$FACEGEN train base --config $P/base.yaml
$FACEGEN train pretrain-lmk --config $P/pretrain_lmk.yaml > "$R/pixel/pretrain_lmk.log" 2>&1 &
LMK=$!
$FACEGEN train pretrain-emo --config $P/pretrain_emo.yaml
wait $LMK || { tail -20 "$R/pixel/pretrain_lmk.log"; exit 1; }
$FACEGEN train joint --config $P/joint.yaml
# Round 2 (training/synthface/pixel/base2.yaml, joint2.yaml): more base training from the first run's base,
# then the joint stage again on it, continuing the first run's control modules.
$FACEGEN train base --config $P/base2.yaml
$FACEGEN train joint --config $P/joint2.yaml
# Round 3 (training/synthface/pixel/reward.yaml, reward2.yaml): the joint stage with a consistency reward
# (facegen/train/reward.py). Its reward estimator is trained apart from the shipped measuring estimator:
# 96,000 renders of 24,000 other identities, another seed, 2,500 steps (~14 min render + ~14 min train).
$FACEGEN synthface render --n 96000 --identities 24000 --identity-start 300000 --seed 33 --images-per-shard 2000 --out "$R/data/reward_train"
$FACEGEN synthface render --heldout --n 2000 --identities 100 --seed 1 --images-per-shard 1000 --workers 0 --out "$R/data/heldout"
$FACEGEN synthface train-estimator --train "$R/data/reward_train" --heldout "$R/data/heldout" \
  --out "$R/reward_estimator" --steps 2500 --width 48 --stem full --soft-emotion --seed 5 --threads 2
$FACEGEN train joint --config $P/reward.yaml
$FACEGEN train joint --config $P/reward2.yaml
$FACEGEN train joint --config $P/reward3.yaml
# Rounds 4-7 (reward4.yaml .. reward7.yaml): the reward stage continued, the identity term in the observable
# space, then the pose term 4x at high noise (t in [0.3, 0.9]).
for round in 4 5 6 7; do $FACEGEN train joint --config $P/reward$round.yaml; done
# Round 8 (reward8.yaml): round 7's control modules on round 2's base with the base's own ID encoder, frozen.
$FACEGEN train joint --config $P/reward8.yaml
# The shipped preset: round 8's model, fp16, with the stochastic sampler as its own.
$FACEGEN synthface ship --model "$R/pixel/reward8/model" --configs $P --scheduler dpmpp-sde \
  --command "make synthface-pixel (scripts/build_synthface_pixel.sh)"
