"""Fit directories to report on: a run store (LLM aggregator rows) and a small plurality fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.cli.fit import main as fit_main

REPO = Path(__file__).resolve().parents[2]
RUN_OUTPUTS = REPO / "data" / "runs" / "csqa_smollm2_gemma3" / "outputs.jsonl"


def _fit(out: Path, outputs: Path, cache: Path, *extra: str) -> Path:
    code = fit_main(
        [
            "--outputs",
            str(outputs),
            "--out-dir",
            str(out),
            "--cache-dir",
            str(cache),
            "--no-figures",
            "--no-progress",
            "-q",
            *extra,
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def report_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-cache")


@pytest.fixture(scope="session")
def run_fit(tmp_path_factory: pytest.TempPathFactory, report_cache: Path) -> Path:
    """A fit of the shipped run store with its LLM aggregator rows; the outputs sit inside."""
    d = tmp_path_factory.mktemp("run-fit")
    src = d / "outputs.jsonl"
    shutil.copy(RUN_OUTPUTS, src)
    return _fit(d / "fit", src, report_cache, "--aggregator", "llm")


@pytest.fixture(scope="session")
def vote_fit(
    tmp_path_factory: pytest.TempPathFactory, report_cache: Path, shipped_outputs: pd.DataFrame
) -> Path:
    """A plurality-vote fit of the first 15 GSM8K questions (3 models x 4 prompt variants)."""
    g = shipped_outputs[shipped_outputs["dataset"] == "rereading/gsm8k"]
    qids = sorted(g["question_id"].unique(), key=lambda q: int(q.split("/")[1]))[:15]
    d = tmp_path_factory.mktemp("vote-fit")
    out = d / "fit"
    out.mkdir()
    src = out / "gsm8k_small.jsonl"
    g[g["question_id"].isin(qids)].to_json(src, orient="records", lines=True)
    return _fit(out, src, report_cache, "--max-configs", "40")
