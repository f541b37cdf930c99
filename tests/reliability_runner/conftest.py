"""Fixtures of the runner reliability suite: a fault server, questions, a figures board."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qdanalysis.runner.llm import managed

# The suite's helper modules (fault_server, rr_helpers) import by their plain names.
sys.path.insert(0, str(Path(__file__).parent))

_FIGURES: dict[str, Any] = {"faults_injected": Counter()}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def figures() -> dict[str, Any]:
    """Run-wide figures for the README (printed at the end of the session)."""
    return _FIGURES


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the managed client's retry sleep by a recorder that does not wait."""
    calls: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        calls.append(seconds)

    monkeypatch.setattr(managed, "_sleep", fake_sleep)
    return calls


def pytest_terminal_summary(terminalreporter: Any) -> None:
    board = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in _FIGURES.items()}
    if len(board) > 1 or board["faults_injected"]:
        terminalreporter.write_sep("-", "runner reliability figures")
        terminalreporter.write_line(json.dumps(board, sort_keys=True, default=str))
