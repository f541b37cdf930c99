"""Fixtures of the real-engine tests: vLLM's CPU build in its own environment (``make setup-vllm``).

The tests skip when that environment is missing, unless ``QDANALYSIS_REQUIRE_VLLM=1`` (``make test``
and CI set it): then a missing engine fails the run instead of silently skipping it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # works under any pytest import mode
from engine_fixtures import start_server

from qdanalysis.errors import MissingDependencyError
from qdanalysis.testing.local_models import prepare_smollm2
from qdanalysis.testing.vllm_server import VLLMServer, vllm_python


@pytest.fixture(scope="session")
def vllm_py() -> Path:
    """The vLLM environment's interpreter (skip, or fail under QDANALYSIS_REQUIRE_VLLM=1)."""
    try:
        return vllm_python()
    except MissingDependencyError as exc:
        if os.environ.get("QDANALYSIS_REQUIRE_VLLM") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as safetensors, converted once into the model cache."""
    return prepare_smollm2()


@pytest.fixture(scope="session")
def vllm_server(
    vllm_py: Path, smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """One real vLLM server on SmolLM2 for the session (ready in about 30-230 s on 2 cores)."""
    server = start_server(vllm_py, smollm2_path, tmp_path_factory.mktemp("vllm"))
    try:
        yield server
    finally:
        server.stop()
