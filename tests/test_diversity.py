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
    vendi_backend,
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


# --- the numba backend (batched cyclic Jacobi) against numpy's eigvalsh, the reference ---

ORDERS = (0.0, 0.5, 1.0, 2.0, 3.0, math.inf)


def structured_grams(rng, m, n, d, *, dup=0.25, near=0.25, spread=1.0):
    """Grams of unit vectors around a shared direction; a share of groups hold an exact
    duplicate (rank-deficient) or a near-duplicate (eigenvalues clustered near 0)."""
    e = rng.normal(size=(m, 1, d)) + spread * rng.normal(size=(m, n, d))
    if n > 1:
        u = rng.random(m)
        e[u < dup, 1] = e[u < dup, 0]
        close = (u >= dup) & (u < dup + near)
        e[close, 1] = e[close, 0] + 1e-7 * rng.normal(size=(int(close.sum()), d))
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    return e @ np.swapaxes(e, -1, -2)


@pytest.fixture
def numba_backend():
    pytest.importorskip("numba")


def test_numba_eigenvalues_equal_eigvalsh(rng, numba_backend):
    from qdanalysis.analysis._jacobi import LANES, eigvalsh_lanes

    for n in (1, 2, 3, 6, 7, 12, 16, 24):
        for m in (1, LANES - 1, LANES, 3 * LANES + 5):
            K = structured_grams(rng, m, n, 8)
            lam, sweeps = eigvalsh_lanes(K)
            assert lam.shape == (m, n)
            assert sweeps < 30  # converged, not stopped by the cap
            np.testing.assert_allclose(np.sort(lam, axis=1), np.linalg.eigvalsh(K), atol=1e-13)


def test_numba_degenerate_spectra(numba_backend):
    from qdanalysis.analysis._jacobi import eigvalsh_lanes

    two = np.kron(np.eye(2), np.ones((3, 3)))  # eigenvalues 3, 3, 0, 0, 0, 0
    K = np.stack([np.eye(6), np.ones((6, 6)), two, np.zeros((6, 6)), np.diag(np.arange(6.0))])
    lam, _ = eigvalsh_lanes(K)
    np.testing.assert_allclose(np.sort(lam, axis=1), np.linalg.eigvalsh(K), atol=1e-14)


def test_numba_reads_the_lower_triangle_like_numpy(rng, numba_backend):
    from qdanalysis.analysis._jacobi import eigvalsh_lanes

    K = structured_grams(rng, 20, 6, 5)
    K[:, 0, 3] += 0.5  # upper triangle only: both backends ignore it
    lam, _ = eigvalsh_lanes(K)
    np.testing.assert_allclose(np.sort(lam, axis=1), np.linalg.eigvalsh(K), atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 24),
    d=st.integers(1, 400),
    m=st.integers(64, 300),
    spread=st.floats(0.01, 3.0),
    q=st.sampled_from(ORDERS),
)
def test_numba_vendi_equals_numpy_property(seed, n, d, m, spread, q):
    pytest.importorskip("numba")
    K = structured_grams(np.random.default_rng(seed), m, n, d, spread=spread)
    fast = vendi_score(K, q=q, backend="numba")
    ref = vendi_score(K, q=q, backend="numpy")
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-9)
    assert ((fast >= 1.0) & (fast <= n)).all()


def test_numba_vendi_matches_package_at_q1(rng, numba_backend):
    K = structured_grams(rng, 200, 6, 384)
    fast = vendi_score(K, backend="numba")
    ref = [package_score_K(k) for k in K]
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-9)


def test_auto_backend_batches_and_shapes(rng, numba_backend):
    K = structured_grams(rng, 4 * 70, 6, 16).reshape(4, 70, 6, 6)  # leading axes kept
    for q in ORDERS:
        auto = vendi_score(K, q=q)
        assert auto.shape == (4, 70)
        np.testing.assert_allclose(auto, vendi_score(K, q=q, backend="numpy"), atol=1e-12)
    np.testing.assert_allclose(
        vendi_score_dual(np.eye(3)[[0, 0, 1, 2]]),
        vendi_score(np.eye(3)[[0, 0, 1, 2]] @ np.eye(3)[[0, 0, 1, 2]].T),
        atol=1e-12,
    )


def test_backend_falls_back_to_numpy_without_numba(rng, monkeypatch):
    from qdanalysis.analysis import diversity

    K = structured_grams(rng, 100, 6, 16)
    monkeypatch.setattr(diversity, "_numba_version", lambda: None)
    assert diversity.vendi_backend() == "numpy"
    np.testing.assert_array_equal(vendi_score(K), vendi_score(K, backend="numpy"))
    with pytest.raises(ConfigError, match="numba is not installed"):
        vendi_score(K, backend="numba")


def test_bad_backend_is_rejected():
    with pytest.raises(ConfigError, match="vendi backend"):
        vendi_score(np.eye(2), backend="lapack")


@pytest.mark.slow
def test_numba_on_real_minilm_grams(outputs_small, minilm, numba_backend):
    """Real MiniLM embeddings of shipped GSM8K outputs: every 6-of-12 group of a question,
    plus groups with an exact and a near-duplicate output (one word changed)."""
    sub = outputs_small[
        outputs_small["question_id"].isin(outputs_small["question_id"].unique()[:4])
    ]
    texts = sub["output"].tolist()
    texts_near = [t + " " for t in texts[:1]] + [t.replace("the", "a", 1) for t in texts[:12]]
    vec = np.asarray(minilm.encode(texts + texts_near), dtype=np.float64)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    groups = []
    for qid in sub["question_id"].unique():
        idx = np.flatnonzero(sub["question_id"].to_numpy() == qid)
        groups += [list(c) for c in itertools.combinations(idx, 6)]
    n_real = len(texts)
    groups += [[0, 0, 1, 2, 3, 4], [0, n_real, 1, 2, 3, 4]]  # duplicate; near-duplicate
    groups += [[i, n_real + 1 + i, (i + 1) % 12, (i + 2) % 12, 12 + i, 24 + i] for i in range(12)]
    E = vec[np.array(groups)]
    K = E @ np.swapaxes(E, 1, 2)
    for q in ORDERS:
        np.testing.assert_allclose(
            vendi_score(K, q=q, backend="numba"), vendi_score(K, q=q, backend="numpy"), atol=1e-9
        )
    picks = np.r_[np.arange(0, len(K), 97), len(K) - 14 + np.arange(14)]
    ref = [package_score_K(k) for k in K[picks]]
    np.testing.assert_allclose(vendi_score(K[picks], backend="numba"), ref, atol=1e-9)


def test_sidecar_parameters_record_the_vendi_backend(monkeypatch):
    from qdanalysis.analysis import diversity
    from qdanalysis.analysis.embeddings import Embeddings
    from qdanalysis.analysis.pipeline import AnalysisSpec, _parameters

    emb = Embeddings(
        vectors=np.eye(2, dtype=np.float32),
        index={"a": 0, "b": 1},
        model="m",
        max_seq_length=None,
        n_truncated=0,
        n_embedded=2,
        n_cached=0,
    )
    assert _parameters(AnalysisSpec(), emb, None, {})["vendi_backend"] == vendi_backend()
    monkeypatch.setattr(diversity, "_numba_version", lambda: None)
    assert _parameters(AnalysisSpec(), emb, None, {})["vendi_backend"] == "numpy"
