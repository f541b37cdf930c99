from __future__ import annotations

import itertools
import json
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.aggregators import Oracle, RunRows
from qdanalysis.analysis.embeddings import embed_texts
from qdanalysis.analysis.pairs import measure_pairs
from qdanalysis.analysis.qdtable import build_qd_table
from qdanalysis.configs import AggregatorSpec, ConfigSpec, ProposerSlot, generate_configs
from qdanalysis.errors import DataWarning
from qdanalysis.outputs import add_proposer_column
from qdanalysis.votes import oracle_scores, plurality_vote_scores


def brute_force_plurality(keys, correct):
    """Enumerate every tie-break: the expected score of a uniform pick among the top keys."""
    votes = Counter(k for k in keys if k is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [k for k, v in votes.items() if v == top]
    score = {k: c for k, c in zip(keys, correct, strict=True) if k is not None}
    return sum(score[k] for k in tied) / len(tied)


def test_plurality_vote_matches_enumeration(rng):
    for _ in range(500):
        n = int(rng.integers(1, 8))
        keys = [None if rng.random() < 0.2 else int(rng.integers(0, 3)) for _ in range(n)]
        truth = {k: float(rng.integers(0, 2)) for k in range(3)}
        correct = [truth[k] if k is not None else 0.0 for k in keys]
        codes = [[-1 if k is None else k for k in keys]]
        got = float(plurality_vote_scores(codes, [correct])[0])
        assert got == pytest.approx(brute_force_plurality(keys, correct))
    assert oracle_scores([[0, 0, 1]])[0] == 1.0


@pytest.fixture
def small_analysis(outputs_small, minilm):
    rows = add_proposer_column(outputs_small)
    cfgs = generate_configs(rows, max_configs=40, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        emb = embed_texts(rows["output"].tolist(), minilm, progress=False)
        qd, pairs = build_qd_table(rows, {"rereading/gsm8k": cfgs}, emb)
    return rows, cfgs, qd, pairs


def test_quality_performance_diversity_recomputed_from_raw_rows(small_analysis, minilm):
    rows, cfgs, qd, _ = small_analysis
    lookup = {(r.question_id, r.model, r.sample_index): r for r in rows.itertuples()}
    for spec in cfgs[:5]:
        q_vals, t_vals, d_vals = [], [], []
        for qid in sorted(rows["question_id"].unique()):
            slot_rows = [lookup.get((qid, s.model, s.sample_index)) for s in spec.proposers]
            if any(r is None for r in slot_rows):
                continue  # pair dropped: a slot has no output
            q_vals.append(np.mean([r.correct for r in slot_rows]))
            t_vals.append(
                brute_force_plurality(
                    [r.answer_key for r in slot_rows], [r.correct for r in slot_rows]
                )
            )
            v = minilm.encode([r.output for r in slot_rows]).astype(np.float64)
            from vendi_score import vendi

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                d_vals.append(vendi.score_K(v @ v.T, q=1))
        got = qd.set_index("config_id").loc[spec.config_id]
        assert got["n_questions"] == len(q_vals)
        assert got["quality"] == pytest.approx(100 * np.mean(q_vals), abs=1e-9)
        assert got["performance"] == pytest.approx(100 * np.mean(t_vals), abs=1e-9)
        assert got["diversity"] == pytest.approx(np.mean(d_vals), abs=1e-5)
        assert json.loads(got["proposers"]) == [s.model for s in spec.proposers]


def test_qd_table_columns_and_ranges(small_analysis):
    _, cfgs, qd, pairs = small_analysis
    assert len(qd) == len(cfgs) == 40
    assert qd["quality"].between(0, 100).all()
    assert qd["performance"].between(0, 100).all()
    assert qd["diversity"].between(1, 6).all()
    assert qd["embedding_model"].nunique() == 1
    assert qd["embedding_model"].iloc[0].startswith("all-MiniLM-L6-v2@")
    assert len(pairs) == qd["n_questions"].sum()
    assert (qd["vendi_q"] == 1.0).all()
    assert (qd["aggregator"] == "plurality_vote").all()


def test_missing_slot_output_drops_the_pair_with_a_warning(outputs_small):
    rows = add_proposer_column(outputs_small)
    q0 = rows["question_id"].iloc[0]
    gone = rows[
        ~(
            (rows["question_id"] == q0)
            & (rows["model"] == "gpt-3.5-turbo")
            & (rows["sample_index"] == 0)
        )
    ]
    spec = ConfigSpec(
        method="mixed_moa",
        proposers=(
            ProposerSlot(model="gpt-3.5-turbo", sample_index=0),
            ProposerSlot(model="text-davinci-003", sample_index=0),
        ),
    )
    with pytest.warns(DataWarning, match="left out"):
        pairs = measure_pairs(gone, [spec], None, dataset="rereading/gsm8k")
    assert q0 not in set(pairs["question_id"])
    assert len(pairs) == rows["question_id"].nunique() - 1


def test_llm_aggregator_rows_give_performance(outputs_small):
    rows = add_proposer_column(outputs_small)
    spec = ConfigSpec(
        method="mixed_moa",
        proposers=tuple(
            ProposerSlot(model=m, sample_index=0) for m in sorted(rows["model"].unique())
        ),
        aggregator=AggregatorSpec(kind="llm", model="agg"),
    )
    qids = sorted(rows["question_id"].unique())
    agg = pd.DataFrame(
        {
            "dataset": "rereading/gsm8k",
            "question_id": qids,
            "role": "aggregator",
            "config_id": spec.config_id,
            "config": spec.to_json(),
            "step": 0,
            "is_final": True,
            "correct": [float(i % 3 == 0) for i in range(len(qids))],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        pairs = measure_pairs(
            rows, [spec], None, dataset="rereading/gsm8k", aggregator=RunRows.from_outputs(agg)
        )
    merged = pairs.merge(agg, on="question_id")
    np.testing.assert_array_equal(merged["performance"], merged["correct"])


def test_every_slot_combination_of_a_tiny_space(outputs_small):
    rows = add_proposer_column(outputs_small)
    models = sorted(rows["model"].unique())
    specs = [
        ConfigSpec(
            method="mixed_moa",
            proposers=tuple(
                ProposerSlot(model=m, sample_index=s) for m, s in zip(models, combo, strict=True)
            ),
        )
        for combo in itertools.product(range(4), repeat=3)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        pairs = measure_pairs(rows, specs, None, dataset="rereading/gsm8k", aggregator=Oracle())
    assert pairs["config_id"].nunique() == 64
    assert (pairs["performance"] >= pairs["quality"]).all()  # oracle bounds the mean
