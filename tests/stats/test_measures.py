import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdanalysis.analysis.diversity import answer_count, answer_entropy, vendi_score
from qdanalysis.analysis.sensitivity import (
    HashingEmbedder,
    centered_k_norm,
    k_norm,
    measure_table,
)
from qdanalysis.errors import DataError

qualities = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=8)


@given(qualities)
@settings(max_examples=50, deadline=None)
def test_every_quality_aggregator_at_k1_is_the_mean(q):
    m = float(np.mean(q))
    assert float(k_norm(q, k=1)) == pytest.approx(m, abs=1e-12)
    assert float(centered_k_norm(q, k=1, center=min(q))) == pytest.approx(m, abs=1e-12)
    assert float(centered_k_norm(q, k=1, center=0.0)) == pytest.approx(m, abs=1e-12)


@given(qualities)
@settings(max_examples=50, deadline=None)
def test_k_norm_grows_and_centered_shrinks_with_k(q):
    c = min(q)
    for k in (2, 3):
        assert float(k_norm(q, k=k)) >= float(k_norm(q, k=k - 1)) - 1e-12
        assert (
            float(centered_k_norm(q, k=k, center=c))
            <= float(centered_k_norm(q, k=k - 1, center=c)) + 1e-12
        )


def test_centered_k_norm_rejects_quality_below_center():
    with pytest.raises(DataError, match="center"):
        centered_k_norm([0.1, 0.5], k=2, center=0.3)


def test_answer_measures_match_a_python_reference():
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 4, size=(200, 6))
    ref_n, ref_h = [], []
    for row in codes:
        keys = [k for k in row if k >= 0]
        ref_n.append(len(set(keys)))
        p = np.array([keys.count(k) for k in set(keys)], dtype=float) / max(len(keys), 1)
        ref_h.append(float(-(p * np.log(p)).sum()) if keys else 0.0)
    np.testing.assert_allclose(answer_count(codes), ref_n)
    np.testing.assert_allclose(answer_entropy(codes), ref_h, atol=1e-12)


def test_dual_vendi_equals_primal_vendi():
    from qdanalysis.analysis.diversity import vendi_score_dual

    x = np.random.default_rng(1).normal(size=(30, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for q in (0.5, 1.0, 2.0, math.inf):
        assert float(vendi_score_dual(x, q=q)) == pytest.approx(
            float(vendi_score(x @ x.T, q=q)), rel=1e-8
        )


def test_hashing_embedder_is_unit_and_deterministic():
    e = HashingEmbedder(n_features=64)
    v = e.encode(["print(1)", "", "print(1)"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    assert v.dtype == np.float32
    assert np.array_equal(v[0], v[2])


def test_measure_table_reproduces_the_qd_table(small_analysis, small_outputs):
    m = measure_table(small_analysis, small_outputs).set_index(["dataset", "config_id"])
    qd = small_analysis.qd_table.set_index(["dataset", "config_id"])
    m = m.loc[qd.index]
    np.testing.assert_allclose(m["quality_mean"], qd["quality"], rtol=1e-10)
    np.testing.assert_allclose(m["diversity_vendi_q1"], qd["diversity"], rtol=1e-10)
    np.testing.assert_allclose(m["performance"], qd["performance"], rtol=1e-10)
    # K = 1 members of the families are the mean; higher orders differ.
    assert (m["quality_knorm_k2"] >= m["quality_mean"] - 1e-9).all()
    assert (m["diversity_vendi_q0.5"] >= m["diversity_vendi_q1"] - 1e-9).all()
    assert (m["diversity_vendi_q1"] >= m["diversity_vendi_q2"] - 1e-9).all()


def test_model_quality_source_matches_quality_model(small_analysis, small_outputs):
    m = measure_table(small_analysis, small_outputs, quality_source="model", pooled=False)
    m = m.set_index(["dataset", "config_id"])
    qd = small_analysis.qd_table.set_index(["dataset", "config_id"])
    np.testing.assert_allclose(m.loc[qd.index, "quality_mean"], qd["quality_model"], rtol=1e-10)
