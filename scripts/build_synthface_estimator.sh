#!/usr/bin/env bash
# Rebuild the shipped synthface proxy estimator (facegen/synthface/data/estimator.*) from scratch: the
# held-out evaluation render, 256,000 extra training renders of 64,000 identities (beside the model's
# 64,000 training renders, so the estimator cannot memorise them), then 12,000 steps with a
# full-resolution first convolution and the emotion head fit to the rendered expression's true posterior.
# ~55 min on 2 cores (rendering ~13 min at ~330 images/s, training ~41 min at ~4.9 steps/s). Resumable;
# everything under runs/synthface/ (git-ignored). Usage: scripts/build_synthface_estimator.sh [FACEGEN]
set -euo pipefail
cd "$(dirname "$0")/.."
FACEGEN=${1:-.venv/bin/facegen}
R=runs/synthface
$FACEGEN synthface render --n 64000 --identities 6400 --seed 0 --images-per-shard 2000 --out "$R/data/train"
$FACEGEN synthface render --heldout --n 2000 --identities 100 --seed 1 --images-per-shard 1000 --workers 0 --out "$R/data/heldout"
$FACEGEN synthface render --n 256000 --identities 64000 --identity-start 10000 --seed 21 --out "$R/data/estimator_train"
$FACEGEN synthface train-estimator --train "$R/data/train" --train "$R/data/estimator_train" --heldout "$R/data/heldout" \
  --out "$R/estimator3" --steps 12000 --width 64 --stem full --soft-emotion --threads 2 --ship
