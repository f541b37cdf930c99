"""Fixtures of the study tests: a small study TOML over copied questions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

#: Questions whose answers (0-3) the mock backend's digit answers can hit, so quality varies.
QUESTIONS = [
    {
        "dataset": "toy",
        "question_id": f"toy/{j}",
        "question": f"What is {i} + {k}?",
        "reference": str(i + k),
        "task": "math",
    }
    for j, (i, k) in enumerate(((0, 1), (1, 1), (2, 1), (0, 0), (1, 2), (0, 2)))
]

#: A small study: two mock proposers, one mock aggregator; Self-MoA, Mixed-MoA, Self-MoA-Seq
#: and the baselines. ``{models}`` is replaced by the [models.*] tables of a test.
TEMPLATE = """\
[study]
name = "small"
out = "out"
seed = 0
concurrency = 4

{models}

[task]
questions = ["questions.jsonl"]
limit = {limit}

[proposers]
max_tokens = 64
timeout_s = 60
[[proposers.pool]]
model = "a"
samples = 3
[[proposers.pool]]
model = "b"
samples = 3

[design]
n = 3
max_configs = {max_configs}
seed = 0
methods = ["self_moa", "mixed_moa"]
self_moa_seq = [{{ model = "a", samples = 3, window = 2, repeats = 1 }}]
baselines = ["single", "plurality_vote"]

[aggregation]
max_tokens = 64
timeout_s = 60
[[aggregation.aggregators]]
model = "agg"
prompt = "moa"
temperature = 0.0

[analysis]
figures = false
"""


def mock_models(log: Path | None = None, delay_s: float = 0.0) -> str:
    """[models.*] tables of three mock models sharing one (logged) mock backend."""
    opts = {"delay_s": delay_s} | ({"log_path": str(log)} if log is not None else {})
    inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in opts.items())
    return "\n".join(
        f'[models.{m}]\nbackend = "mock"\noptions = {{ {inline} }}' for m in ("a", "b", "agg")
    )


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study TOML (and its questions) into a folder; returns the TOML's path."""

    def write(
        folder: str = "study",
        *,
        models: str | None = None,
        limit: int = 3,
        max_configs: int = 8,
        text: str | None = None,
    ) -> Path:
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "questions.jsonl").write_text(
            "".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8"
        )
        body = text or TEMPLATE.format(
            models=models or mock_models(), limit=limit, max_configs=max_configs
        )
        path = d / "study.toml"
        path.write_text(body, encoding="utf-8")
        return path

    return write


def call_log(path: Path) -> list[dict]:
    """The mock backend's call log (one JSON line per upstream call)."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
