# The two entry points the README opens with: `make demo` and `make test`.
# Both build .venv with the pinned versions in constraints.txt (CPU torch from local disk here).
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.facegen-installed
DEMO_OUT ?= out/demo

.PHONY: venv demo test bench clean synthface-model synthface-estimator synthface-study synthface-pixel

$(STAMP): pyproject.toml constraints.txt constraints-gpu.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -c constraints.txt -e ".[analysis,test]"
	$(VENV)/bin/pip check
	# insightface's wheel ships t1.jpg (a 6-person group photo) used by the face-analysis tests; only
	# downloaded, never installed (it would pull opencv-python over MediaPipe's opencv-contrib).
	$(PIP) download -q --no-deps insightface==2.1 -d $(VENV)/test-data
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/facegen balance --manifest manifests/demo.yaml --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The KL-latent synthface recipe + proxy estimator from scratch (~7.1 h on 2 CPU cores: round 1 ~2 h,
# round 2's base ~1.1 h, round 3 ~45 min, round 4 ~15 min, round 5a ~70 min, round 5b ~1.6 h, estimator ~55 min;
# resumable; everything under runs/synthface/, which git ignores). Its round 5b was the shipped preset until
# 2026-12-07. CI never runs it.
synthface-model: $(STAMP)
	scripts/build_synthface_model.sh $(VENV)/bin/facegen

# Rebuild the shipped synthface preset: the pixel-space recipe (training/synthface/pixel/: fixed 2x resampling
# autoencoder, 32x32x3 latents; refiner, base, pretrain-lmk beside pretrain-emo, joint, round 2, then round 3's
# reward estimator and consistency-reward joint stages, rounds 4-8 of them (round 8 on the base's own, frozen ID
# encoder); ~6.5 h on 2 cores; resumable), then `synthface ship` of round 8.
# The shipped measuring estimator is synthface-estimator's. CI never runs it.
synthface-pixel: $(STAMP)
	scripts/build_synthface_pixel.sh $(VENV)/bin/facegen

# Only the proxy estimator (the measuring instrument; ~55 min; synthface-model runs it too).
synthface-estimator: $(STAMP)
	scripts/build_synthface_estimator.sh $(VENV)/bin/facegen

# The synthface study (benchmarks/results/synthface.md) on the models synthface-model trained.
synthface-study: $(STAMP)
	$(VENV)/bin/python benchmarks/synthface_study.py

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out
