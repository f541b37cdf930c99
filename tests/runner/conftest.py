"""Fixtures of the runner tests (MoA orchestration, tasks, store, CLI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "llm"))  # the LLM suite's model/server helpers
from fixtures import serve_model, smollm2_dir, tiny_model_dir

from qdanalysis.runner.tasks import Question
from qdanalysis.testing import MockClient

os.environ["HF_HUB_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "data" / "questions"

__all__ = ["QUESTIONS", "REPO", "serve_model", "smollm2_dir"]


@pytest.fixture
def mock_client() -> MockClient:
    return MockClient()


@pytest.fixture
def math_q() -> Question:
    return Question(
        dataset="d", question_id="q1", question="What is 1 + 1?", reference="2", task="math"
    )


@pytest.fixture
def mc_q() -> Question:
    return Question(
        dataset="d",
        question_id="q2",
        question="Pick one.",
        reference="B",
        task="multiple_choice",
        choices=("x", "y", "z"),
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))
