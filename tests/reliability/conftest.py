"""Fixtures of the reliability suite: offline models, a shared embedding cache, input files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rel_helpers import jsonl_bytes, real_rows


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the whole session, so MiniLM embeds each text once."""
    return tmp_path_factory.mktemp("emb-cache")


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write bytes to ``tmp_path/inputs/<name>`` and return the path."""
    d = tmp_path / "inputs"
    d.mkdir(exist_ok=True)

    def _write(name: str, data: bytes) -> Path:
        p = d / name
        p.write_bytes(data)
        return p

    return _write


@pytest.fixture(scope="session")
def real_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real outputs file: 5 CSQA questions x 3 models x 4 prompts (60 rows)."""
    p = tmp_path_factory.mktemp("real") / "csqa_small.jsonl"
    p.write_bytes(jsonl_bytes(real_rows("rereading_csqa.jsonl.gz", 5, short=True)))
    return p
