#!/usr/bin/env bash
# The pixel-space synthface recipe (training/synthface/pixel/), from scratch: render the training data,
# an untrained model with the fixed 2x resampling autoencoder (32x32x3 pixel latents), then the decoder
# refiner, the base model, the two control modules side by side (one core each) and the joint stage, then
# round 2 (more base training, the joint stage again).
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
