#!/usr/bin/env bash
# Rebuild the shipped synthface preset from scratch: render the training data, train the five stages
# (vae, base, pretrain-lmk, pretrain-emo, joint) as Ray Train jobs, then ship the joint model.
# Everything goes to runs/synthface/ (git-ignored); every step resumes when re-run.
# Usage: scripts/build_synthface_model.sh [FACEGEN]   (default .venv/bin/facegen)   ~2.5 h on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
FACEGEN=${1:-.venv/bin/facegen}
R=runs/synthface
mkdir -p "$R"
$FACEGEN synthface render --n 64000 --identities 6400 --seed 0 --images-per-shard 2000 --out "$R/data/train"
test -f "$R/init/facegen.json" || $FACEGEN synthface init-model --seed 0 --out "$R/init"
$FACEGEN train vae --config training/synthface/vae.yaml
$FACEGEN train base --config training/synthface/base.yaml
$FACEGEN train pretrain-lmk --config training/synthface/pretrain_lmk.yaml
$FACEGEN train pretrain-emo --config training/synthface/pretrain_emo.yaml
$FACEGEN train joint --config training/synthface/joint.yaml
# the measuring instrument: the proxy estimator, evaluated on held-out identities
$FACEGEN synthface render --heldout --n 2000 --identities 100 --seed 1 --images-per-shard 1000 --workers 0 --out "$R/data/heldout"
$FACEGEN synthface train-estimator --train "$R/data/train" --heldout "$R/data/heldout" --out "$R/estimator" --steps 6500 --ship
$FACEGEN synthface ship --model "$R/joint/model" --configs training/synthface
