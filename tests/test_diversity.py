from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qdanalysis.analysis.diversity import (
    hill_number,
    pairwise_cosine_distance,
    slice_grams,
    vendi_score,
    vendi_score_dual,
)
from qdanalysis.errors import ConfigError, DataError


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def package_score_K(K):
    from vendi_score import vendi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(vendi.score_K(K, q=1))


def test_matches_vendi_score_package_at_q1(rng):
    Ks = []
    for n in (2, 3, 6, 12):
        for d in (3, 8, 384):
            x = unit_rows(rng, n, d)
            Ks.append(x @ x.T)
    ours = [float(vendi_score(K)) for K in Ks]
    ref = [package_score_K(K) for K in Ks]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_batched_equals_one_by_one(rng):
    X = np.stack([unit_rows(rng, 6, 16) for _ in range(50)])
    K = X @ np.swapaxes(X, 1, 2)
    for q in (0.5, 1.0, 2.0, math.inf):
        batched = vendi_score(K, q=q)
        single = np.array([vendi_score(k, q=q) for k in K])
        np.testing.assert_array_equal(batched, single)


def test_known_values():
    assert vendi_score(np.ones((6, 6))) == pytest.approx(1.0)
    assert vendi_score(np.eye(6)) == pytest.approx(6.0)
    two = np.kron(np.eye(2), np.ones((3, 3)))
    for q in (0.0, 0.5, 1.0, 2.0, math.inf, "inf"):
        assert vendi_score(two, q=q) == pytest.approx(2.0)


def test_q2_equals_frobenius_closed_form(rng):
    x = unit_rows(rng, 6, 5)
    K = x @ x.T
    n = 6
    closed = 1.0 / np.sum((K / n) ** 2)  # sum of squared eigenvalues of K/n = ||K/n||_F^2
    assert vendi_score(K, q=2) == pytest.approx(closed, rel=1e-12)


def test_order_is_respected_and_monotone(rng):
    x = unit_rows(rng, 6, 4)
    K = x @ x.T
    vals = [float(vendi_score(K, q=q)) for q in (0.0, 0.5, 1.0, 2.0, math.inf)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(vals))
    assert vals[0] > vals[-1]  # sensitive to q (vendi-score 0.0.3's score_X is not)


def test_bad_input_is_rejected():
    with pytest.raises(DataError, match="shape"):
        vendi_score(np.ones((2, 3)))
    with pytest.raises(DataError, match="finite"):
        vendi_score(np.full((2, 2), np.nan))
    with pytest.raises(ConfigError, match="order"):
        vendi_score(np.eye(2), q=-1)


def test_hill_number_handles_zeros():
    assert hill_number([1.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert hill_number([0.5, 0.5, 0.0], q=0) == 2.0


def test_slice_grams_matches_direct_products(rng):
    x = unit_rows(rng, 10, 7)
    G = x @ x.T
    local = np.array([[0, 3, 5], [9, 1, 2]])
    for i, idx in enumerate(local):
        np.testing.assert_allclose(slice_grams(G, local)[i], x[idx] @ x[idx].T)


def test_pairwise_cosine_distance():
    assert float(pairwise_cosine_distance(np.ones((4, 4)))) == pytest.approx(0.0)
    assert float(pairwise_cosine_distance(np.eye(4))) == pytest.approx(1.0)


embeddings = (
    st.integers(min_value=2, max_value=7)
    .flatmap(
        lambda n: st.integers(min_value=1, max_value=9).flatmap(
            lambda d: arrays(
                np.float64,
                (n, d),
                elements=st.floats(-1, 1, allow_nan=False, allow_subnormal=False),
            )
        )
    )
    .filter(lambda x: (np.linalg.norm(x, axis=1) > 1e-3).all())
)


def _gram(x):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x, x @ x.T


@settings(max_examples=150, deadline=None)
@given(embeddings, st.sampled_from([0.5, 1.0, 2.0, math.inf]))
def test_properties(x, q):
    x, K = _gram(x)
    n = len(x)
    vs = float(vendi_score(K, q=q))
    assert 1.0 - 1e-9 <= vs <= n + 1e-9
    perm = np.random.default_rng(0).permutation(n)
    assert float(vendi_score(K[np.ix_(perm, perm)], q=q)) == pytest.approx(vs, rel=1e-6, abs=1e-6)
    x2 = np.repeat(x, 2, axis=0)  # duplicate every item
    assert float(vendi_score(x2 @ x2.T, q=q)) == pytest.approx(vs, rel=1e-6, abs=1e-6)
    assert float(vendi_score_dual(x, q=q)) == pytest.approx(vs, rel=1e-6, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=8))
def test_identical_and_orthogonal(n):
    assert float(vendi_score(np.ones((n, n)))) == pytest.approx(1.0)
    assert float(vendi_score(np.eye(n))) == pytest.approx(float(n))
