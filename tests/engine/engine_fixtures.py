"""Helpers of the real-engine tests (plain functions, no pytest fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

from qdanalysis.testing.vllm_server import VLLMServer

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "data" / "questions"
#: Cores of the test servers' OpenMP threads (VLLM_CPU_OMP_THREADS_BIND); one keeps the other
#: core for the client process.
THREADS = os.environ.get("QDANALYSIS_VLLM_THREADS", "0")


def start_server(vllm_py: Path, model: Path, log_dir: Path, *, name: str = "smollm2") -> VLLMServer:
    """A started, ready vLLM server on ``model`` (the caller stops it)."""
    server = VLLMServer(
        model,
        served_model_name=name,
        python=vllm_py,
        threads=THREADS,
        log_path=log_dir / "vllm.log",
    )
    server.start()
    try:
        return server.wait_ready(timeout_s=900)
    except BaseException:
        server.stop()
        raise
