"""Fixtures of the statistics tests: a small real analysis of the shipped outputs.

The analysis embeds with the model-free :class:`qdanalysis.analysis.sensitivity.HashingEmbedder`,
so these tests need no sentence-transformers model; notebook tests (``slow``) use the real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_outputs() -> pd.DataFrame:
    from qdanalysis.outputs import load_outputs

    df = load_outputs(
        [
            ROOT / "data/cruxeval_i_codellama7b_samples.jsonl.gz",
            ROOT / "data/rereading_csqa.jsonl.gz",
        ]
    )
    keep = df.groupby("dataset")["question_id"].transform(lambda s: s.isin(sorted(s.unique())[:40]))
    return df[keep].reset_index(drop=True)


@pytest.fixture(scope="session")
def small_analysis(small_outputs):
    from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
    from qdanalysis.analysis.sensitivity import HashingEmbedder

    return analyze(
        small_outputs,
        AnalysisSpec(n_proposers=4, max_configs=60),
        embedder=HashingEmbedder(n_features=128),
        cache=False,
        progress=False,
    )
