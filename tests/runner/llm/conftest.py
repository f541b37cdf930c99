"""Fixtures of the LLM-layer tests (helpers live in fixtures.py for reuse by other suites)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import qdanalysis.runner.llm.managed as managed

sys.path.insert(0, str(Path(__file__).parent))  # works under any pytest import mode
from fixtures import serve_model, smollm2_dir, tiny_model_dir

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries never wait; the requested sleeps are recorded in the returned list."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(managed, "_sleep", fake_sleep)
    return slept


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_client(tiny_dir: Path):  # type: ignore[no-untyped-def]
    from qdanalysis.runner.llm.hf_local import HFLocalClient

    client = HFLocalClient(tiny_dir, device="cpu")
    client.warm_up()
    return client


@pytest.fixture(scope="session")
def tiny_server(tiny_dir: Path) -> Iterator[str]:
    """Base URL of the toolkit's server over the tiny model (one subprocess per run)."""
    with serve_model(tiny_dir) as url:
        yield url


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return smollm2_dir()


@pytest.fixture(scope="session")
def smollm2_client(smollm2_path: Path):  # type: ignore[no-untyped-def]
    from qdanalysis.runner.llm.hf_local import HFLocalClient

    client = HFLocalClient(smollm2_path, device="cpu")
    client.warm_up()
    return client


@pytest.fixture(scope="session")
def smollm2_server(smollm2_path: Path) -> Iterator[str]:
    with serve_model(smollm2_path, extra_args=["--model-name", "smollm2"]) as url:
        yield url
