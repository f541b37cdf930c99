"""Embedding rows of the sensitivity table, and the truncated share per dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.embeddings import SentenceTransformerEmbedder
from qdanalysis.analysis.sensitivity import (
    HashingEmbedder,
    embedding_measures,
    measure_table,
    sensitivity_table,
    truncation_by_dataset,
)
from qdanalysis.outputs import proposer_rows


def test_embedding_rows_join_the_sensitivity_table(small_analysis, small_outputs):
    tables = embedding_measures(
        small_analysis, small_outputs, {"hashed 64": HashingEmbedder(n_features=64)}, pooled=False
    )
    assert list(tables) == ["default", "embedding: hashed 64"]
    pd.testing.assert_frame_equal(
        tables["default"], measure_table(small_analysis, small_outputs, pooled=False)
    )
    other = tables["embedding: hashed 64"]
    assert not np.allclose(other["diversity_vendi_q1"], tables["default"]["diversity_vendi_q1"])
    sens = sensitivity_table(tables, spec=small_analysis.spec)
    # "(answers)" and "(correctness)": the answer-count and N_eff diversity rows.
    assert {"default", "embedding: hashed 64", "(answers)", "(correctness)"} == set(
        sens["embedding"]
    )
    paper = sens[sens["is_paper"]]
    assert (paper["embedding"] == "default").all()  # the analysis's own fit stays the default


def test_truncated_share_per_dataset(minilm, small_outputs):
    chunk = SentenceTransformerEmbedder(device="cpu", long_texts="chunk")
    tab = truncation_by_dataset(small_outputs, {"MiniLM": minilm, "MiniLM chunk": chunk})
    texts = proposer_rows(small_outputs).drop_duplicates(["dataset", "output"])
    for ds, g in texts.groupby("dataset"):
        n_long = int(np.sum(minilm.token_counts(g["output"].tolist()) > 256))
        cut = tab[(tab["dataset"] == ds) & (tab["embedding"] == "MiniLM")].iloc[0]
        whole = tab[(tab["dataset"] == ds) & (tab["embedding"] == "MiniLM chunk")].iloc[0]
        assert (cut["n_texts"], cut["n_long"]) == (len(g), n_long)
        assert cut["truncated_share"] == pytest.approx(n_long / len(g))
        assert (whole["n_long"], whole["truncated_share"]) == (n_long, 0.0)
