import json

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.methods import (
    method_table,
    run_method_table,
    sequential_vote_scores,
    single_model_table,
    vote_scaling_curve,
)
from qdanalysis.analysis.sensitivity import measure_table, sensitivity_long, sensitivity_table
from qdanalysis.errors import ConfigError
from qdanalysis.votes import plurality_vote_scores


def test_sensitivity_paper_row_equals_the_pipeline_fit(small_analysis, small_outputs):
    sens = sensitivity_table(
        measure_table(small_analysis, small_outputs, pooled=False), spec=small_analysis.spec
    )
    paper = sens[sens["is_paper"]].set_index("dataset")
    c = small_analysis.coefficients
    for ds in paper.index:
        a = c[(c["dataset"] == ds) & (c["term"] == "quality_z")].iloc[0]
        b = c[(c["dataset"] == ds) & (c["term"] == "diversity_z")].iloc[0]
        assert paper.loc[ds, "alpha"] == pytest.approx(a["estimate"])
        assert paper.loc[ds, "beta"] == pytest.approx(b["estimate"])
        assert paper.loc[ds, "r2"] == pytest.approx(a["r2"])
    # 7 quality x 8 diversity measures (4 Vendi orders, cosine, answers, entropy, N_eff), plus
    # one covariate row (the default measures + z(length)) per dataset.
    n_q, n_d = 7, 8
    assert sens.groupby("dataset").size().max() <= n_q * n_d + 1
    long = sensitivity_long(sens)
    assert len(long) == 2 * len(sens)
    assert (long["ci_low"] <= long["estimate"]).all()


def _seq_reference(keys, correct, window, repeats):
    """Per-question loop with exact tie splitting is hard; compare on tie-free rows."""
    out = []
    for k, c in zip(keys, correct, strict=True):
        score = dict(zip(k, c, strict=True))

        def vote(ks):
            vals, counts = np.unique(ks, return_counts=True)
            return vals[np.argmax(counts)]

        y = vote(k[:window])
        i = window
        while i < len(k):
            new = list(k[i : i + window - repeats])
            y = vote([y] * repeats + new)
            i += len(new)
        out.append(score[y])
    return np.array(out, dtype=float)


def test_sequential_vote_matches_reference_on_clear_majorities():
    rng = np.random.default_rng(0)
    # Two keys, odd windows of fresh votes: no ties at any step.
    keys = rng.integers(0, 2, size=(300, 9))
    correct = (keys == 0).astype(float)
    got = sequential_vote_scores(keys, correct, window=5, repeats=2)
    np.testing.assert_allclose(got, _seq_reference(keys, correct, 5, 2))


def test_sequential_vote_with_large_window_is_plurality():
    rng = np.random.default_rng(1)
    keys = rng.integers(-1, 3, size=(50, 6))
    correct = (keys == 1).astype(float)
    np.testing.assert_allclose(
        sequential_vote_scores(keys, correct, window=6, repeats=3),
        plurality_vote_scores(keys, correct),
    )
    with pytest.raises(ConfigError):
        sequential_vote_scores(keys, correct, window=3, repeats=3)


def test_vote_scaling_curve_ends(small_outputs):
    ds = "cruxeval-i/codellama-7b-samples"
    curve = vote_scaling_curve(small_outputs, dataset=ds, windows=((4, 2),), n_orders=5)
    v = curve[curve["method"] == "self_moa (vote)"].set_index("n_samples")["accuracy"]
    rows = small_outputs[small_outputs["dataset"] == ds]
    assert v.loc[1] == pytest.approx(100 * rows["correct"].mean(), abs=8)
    k = pd.factorize(rows.sort_values(["question_id", "sample_index"])["answer_key"])[0]
    c = rows.sort_values(["question_id", "sample_index"])["correct"].to_numpy(float)
    full = 100 * plurality_vote_scores(k.reshape(-1, 10), c.reshape(-1, 10)).mean()
    assert v.loc[10] == pytest.approx(full)  # every order holds all 10 samples
    seq = curve[curve["method"].str.startswith("self_moa_seq")].set_index("n_samples")["accuracy"]
    assert seq.loc[4] == pytest.approx(v.loc[4])  # one window = plain vote


def test_method_and_single_tables(small_analysis, small_outputs):
    m = method_table(small_analysis.qd_table)
    assert set(m["method"]) <= {"self_moa", "mixed_moa"}
    s = single_model_table(small_outputs)
    csqa = s[s["dataset"] == "rereading/csqa"]
    assert csqa["accuracy"].is_monotonic_decreasing
    assert len(csqa) == 3


def test_run_method_table_reads_final_rows():
    spec = {
        "method": "self_moa_seq",
        "proposers": [{"model": "a", "sample_index": i} for i in range(4)],
        "window": 3,
        "repeats": 1,
        "aggregator": {"kind": "llm", "model": "agg", "prompt_id": "moa-v1", "temperature": 0.7},
    }
    rows = []
    for q in range(4):
        for step, final in ((0, False), (1, True)):
            rows.append(
                {
                    "dataset": "d",
                    "question_id": f"q{q}",
                    "role": "aggregator",
                    "config_id": "cfg-1",
                    "config": json.dumps(spec),
                    "step": step,
                    "is_final": final,
                    "correct": float(final and q < 3),
                }
            )
    t = run_method_table(pd.DataFrame(rows))
    assert t.loc[0, "accuracy"] == pytest.approx(75.0)
    assert t.loc[0, "window"] == 3
    assert t.loc[0, "method"] == "self_moa_seq"
    assert t.loc[0, "aggregator"] == "llm:agg"
    assert run_method_table(pd.DataFrame()).empty
