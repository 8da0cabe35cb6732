# The two entry points the README opens with: `make demo` and `make test`.
# Both build .venv with the pinned versions in constraints.txt (CPU torch from local disk here).
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.facegen-installed
DEMO_OUT ?= out/demo

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml constraints.txt constraints-gpu.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -c constraints.txt -e ".[analysis,test]"
	$(VENV)/bin/pip check
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/facegen balance --manifest manifests/demo.yaml --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out
