"""The pair engine in chunks of questions equals one pass, pair for pair (bounded memory)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from benchmarks._synthetic import cached_embeddings
from qdanalysis.analysis.aggregators import Oracle
from qdanalysis.analysis.embeddings import embed_texts
from qdanalysis.analysis.pairs import (
    PairRequest,
    iter_pair_blocks,
    measure_blocks,
    measure_pairs,
    pair_frame,
    summarise_pair_frames,
    summarise_pairs,
    vendi_name,
)
from qdanalysis.configs import generate_configs
from qdanalysis.errors import ConfigError, DataWarning
from qdanalysis.outputs import add_proposer_column

DATASET = "rereading/gsm8k"


def random_embeddings(texts, seed=0, d=16):
    """Unit vectors per distinct text: chunking is orchestration, any vectors test it."""
    uniq = sorted(set(texts))
    v = np.random.default_rng(seed).normal(size=(len(uniq), d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return cached_embeddings(uniq, v, model="random")


@pytest.fixture
def rows(outputs_small):
    return add_proposer_column(outputs_small)


def same_rows(chunked, whole):
    """The chunks hold the one-pass rows, ordered by chunk of questions first."""
    key = ["config_id", "question_id"]
    a = chunked.sort_values(key, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, whole.sort_values(key, kind="stable").reset_index(drop=True))


def iter_pair_frames(rows, configs, emb, *, dataset, q=1.0, **kw):
    req = PairRequest(vendi_orders=(q,))
    for blocks in iter_pair_blocks(rows, configs, emb, dataset=dataset, request=req, **kw):
        yield pair_frame(blocks, diversity=vendi_name(q))


def one_pass_and_chunks(rows, configs, emb, chunk_pairs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        whole = measure_pairs(rows, configs, emb, dataset=DATASET, **kw)
        frames = list(
            iter_pair_frames(rows, configs, emb, dataset=DATASET, chunk_pairs=chunk_pairs, **kw)
        )
    return whole, frames


@pytest.mark.parametrize("chunk_pairs", [1, 7, 50, 10**9])
def test_chunks_concatenate_to_the_one_pass_table(rows, chunk_pairs):
    configs = generate_configs(rows, n_proposers=6, max_configs=40, seed=1)
    emb = random_embeddings(rows["output"])
    whole, frames = one_pass_and_chunks(rows, configs, emb, chunk_pairs)
    n_q = rows["question_id"].nunique()
    assert len(frames) == (
        n_q if chunk_pairs < len(configs) else math.ceil(n_q / (chunk_pairs // 40))
    )
    same_rows(pd.concat(frames, ignore_index=True), whole)
    pd.testing.assert_frame_equal(summarise_pair_frames(frames), summarise_pairs(whole))


def test_every_measure_and_order_equals_the_one_pass(rows):
    configs = generate_configs(rows, n_proposers=4, max_configs=30, seed=2)
    emb = random_embeddings(rows["output"], seed=3)
    req = PairRequest(vendi_orders=(0.5, 1.0, 2.0, math.inf), cosine=True, answers=True)
    whole = measure_blocks(rows, configs, emb, dataset=DATASET, request=req, warn=False)
    chunks = [
        b
        for blocks in iter_pair_blocks(
            rows, configs, emb, dataset=DATASET, request=req, chunk_pairs=60, warn=False
        )
        for b in blocks
    ]
    (w,) = whole
    crow = {c: i for i, c in enumerate(w.slots.config_ids)}
    qcol = {q: j for j, q in enumerate(w.slots.question_ids)}
    covered = np.zeros(w.keep.shape, dtype=bool)
    for b in chunks:
        ci = np.array([crow[c] for c in b.slots.config_ids])[:, None]
        qi = np.array([qcol[q] for q in b.slots.question_ids])[None, :]
        covered[ci, qi] = True
        np.testing.assert_array_equal(b.keep, w.keep[ci, qi])
        np.testing.assert_array_equal(b.performance, w.performance[ci, qi])
        assert b.diversity.keys() == w.diversity.keys()
        for key, v in b.diversity.items():
            # Stacks of other sizes may take the other eigenvalue backend: equal to 1e-12.
            np.testing.assert_allclose(v, w.diversity[key][ci, qi], rtol=0, atol=1e-12)
    assert not w.keep[~covered].any()  # what no chunk measured was dropped in one pass too


def test_a_type_missing_from_a_chunk_drops_its_pairs_like_one_pass(rows):
    """Chunks of one question where one question lacks a proposer type entirely."""
    q0 = sorted(rows["question_id"].unique())[0]
    gone = rows[~((rows["question_id"] == q0) & (rows["model"] == "gpt-3.5-turbo"))]
    configs = generate_configs(rows, n_proposers=3, max_configs=25, seed=0)
    emb = random_embeddings(rows["output"])
    whole, frames = one_pass_and_chunks(gone, configs, emb, 1, aggregator=Oracle())
    same_rows(pd.concat(frames, ignore_index=True), whole)
    with pytest.warns(DataWarning, match="left out") as one:
        measure_pairs(gone, configs, emb, dataset=DATASET, aggregator=Oracle())
    with pytest.warns(DataWarning, match="left out") as chunked:
        list(
            iter_pair_frames(
                gone, configs, emb, dataset=DATASET, chunk_pairs=1, aggregator=Oracle()
            )
        )
    assert str(one[0].message) == str(chunked[0].message)  # same counts


def test_bad_chunk_size_and_unknown_type_fail_before_work(rows):
    configs = generate_configs(rows, n_proposers=2, max_configs=3)
    with pytest.raises(ConfigError, match="chunk_pairs"):
        next(iter_pair_blocks(rows, configs, None, dataset=DATASET, chunk_pairs=0))
    no_gpt = rows[rows["model"] != "gpt-3.5-turbo"]
    spec = next(
        c
        for c in generate_configs(rows, n_proposers=3, max_configs=50)
        if any(s.model == "gpt-3.5-turbo" for s in c.proposers)
    )
    with pytest.raises(ConfigError, match="proposer type"):
        next(iter_pair_blocks(no_gpt, [spec], None, dataset=DATASET))


@pytest.mark.slow
def test_chunks_on_real_minilm_embeddings(rows, minilm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # truncation is tested elsewhere
        emb = embed_texts(rows["output"].tolist(), minilm, cache=None, progress=False)
    configs = generate_configs(rows, n_proposers=6, max_configs=60, seed=0)
    whole, frames = one_pass_and_chunks(rows, configs, emb, 100)
    same_rows(pd.concat(frames, ignore_index=True), whole)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        blocks = [pair_frame(b) for b in iter_pair_blocks(rows, configs, emb, dataset=DATASET)]
    same_rows(blocks[0], whole)
