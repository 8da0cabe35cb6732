#!/usr/bin/env bash
# Rebuild the shipped synthface preset and proxy estimator from scratch: render the training data, train
# round 1 (vae, base, pretrain-lmk, pretrain-emo, joint; training/synthface/*.yaml), write it as a preset
# folder, train round 2 from it (more base training, then pretrain-lmk, pretrain-emo, joint;
# training/synthface/round2/*.yaml) and ship round 2's joint model. Round 2 exists because round 1's 1,800
# base steps left the UNet far from converged; it is the schedule the shipped weights actually went through.
# Everything goes to runs/synthface/ (git-ignored); every step resumes when re-run.
# Usage: scripts/build_synthface_model.sh [FACEGEN]   (default .venv/bin/facegen)
# Time on this 2-core machine: round 1 ~2 h, round 2 ~1.7 h, estimator ~45 min (it can run beside round 2).
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
# round 2 (pretrain-lmk and pretrain-emo are independent: on 2 cores they can run side by side)
$FACEGEN train base --config training/synthface/round2/base.yaml
$FACEGEN train pretrain-lmk --config training/synthface/round2/pretrain_lmk.yaml
$FACEGEN train pretrain-emo --config training/synthface/round2/pretrain_emo.yaml
$FACEGEN train joint --config training/synthface/round2/joint.yaml
# the study's AD ablation: the same joint stage with lambda_AD = 0 (not shipped)
$FACEGEN train joint --config training/synthface/round2/joint_no_ad.yaml
# the measuring instrument: the proxy estimator, evaluated on held-out identities
$FACEGEN synthface render --heldout --n 2000 --identities 100 --seed 1 --images-per-shard 1000 --workers 0 --out "$R/data/heldout"
$FACEGEN synthface train-estimator --train "$R/data/train" --heldout "$R/data/heldout" --out "$R/estimator2" --steps 12000 --ship
$FACEGEN synthface ship --model "$R/round2/joint/model" --configs training/synthface
