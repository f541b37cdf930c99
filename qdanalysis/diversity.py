"""Diversity: the Vendi Score of proposer-output embeddings, batched.

The Vendi Score of ``n`` items with similarity matrix ``K`` (unit diagonal) is the Hill number
of order ``q`` of the eigenvalues of ``K / n``: the effective number of distinct items, between
1 (all identical) and ``n`` (all orthogonal). This module is numpy only; embeddings come from
:mod:`qdanalysis.embeddings`, and :mod:`qdanalysis.qdtable` slices each configuration's Gram
matrix out of its question's Gram block and calls :func:`vendi_score` once per group size.

References
----------
Friedman and Dieng (2023), "The Vendi Score: A Diversity Evaluation Metric for Machine Learning",
TMLR. Pasarkar and Dieng (2024), "Cousins of the Vendi Score" (orders q other than 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import ConfigError, DataError

__all__ = [
    "DEFAULT_TOL",
    "gram_blocks",
    "hill_number",
    "pairwise_cosine_distance",
    "slice_grams",
    "vendi_score",
    "vendi_score_dual",
]

#: Eigenvalues below ``DEFAULT_TOL * max eigenvalue`` are treated as zero (round-off).
DEFAULT_TOL = 1e-10


def _check_q(q: float) -> float:
    if isinstance(q, str):
        if q.lower() in ("inf", "infinity"):
            return math.inf
        raise ConfigError(f"vendi order q: expected a number >= 0 or 'inf'; got {q!r}.")
    if not isinstance(q, int | float | np.floating | np.integer) or not q >= 0:
        raise ConfigError(f"vendi order q: expected a number >= 0 or math.inf; got {q!r}.")
    return float(q)


def hill_number(p: ArrayLike, *, q: float = 1.0) -> NDArray[np.float64]:
    """Hill number (effective count) of order ``q`` of probability vectors along the last axis.

    ``q = 0``: number of nonzero entries; ``q = 1``: ``exp(-Σ p log p)`` with ``0 log 0 = 0``;
    ``q = inf``: ``1 / max p``; otherwise ``(Σ p^q)^(1 / (1 - q))``.

    Examples
    --------
    >>> hill_number([0.5, 0.5, 0.0]).round(6)
    np.float64(2.0)
    >>> hill_number([[1.0, 0.0], [0.25, 0.75]], q=math.inf).round(4)
    array([1.    , 1.3333])
    """
    qf = _check_q(q)
    w = np.asarray(p, dtype=np.float64)
    if qf == 1.0:
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
        out = np.exp(-plogp.sum(axis=-1))
    elif math.isinf(qf):
        out = 1.0 / w.max(axis=-1)
    elif qf == 0.0:
        out = (w > 0).sum(axis=-1).astype(np.float64)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            powered = np.where(w > 0, np.power(np.where(w > 0, w, 1.0), qf), 0.0)
        out = np.power(powered.sum(axis=-1), 1.0 / (1.0 - qf))
    return np.asarray(out, dtype=np.float64)


def vendi_score(K: ArrayLike, *, q: float = 1.0, tol: float = DEFAULT_TOL) -> NDArray[np.float64]:
    """Vendi Score of one or many similarity matrices.

    Parameters
    ----------
    K
        Array of shape ``(..., n, n)``: symmetric positive semi-definite similarity matrices
        with unit diagonal (e.g. cosine similarities of L2-normalised embeddings). Batched over
        the leading axes.
    q
        Order of the Hill number: 1 (default, Shannon; the original Vendi Score), 0, 0.5, 2,
        ``math.inf`` or any value >= 0.
    tol
        Relative eigenvalue tolerance: eigenvalues below ``tol * max eigenvalue`` are set to
        zero before renormalising (removes round-off that would push scores of low orders
        above ``n``).

    Returns
    -------
    numpy.ndarray
        float64 of shape ``K.shape[:-2]``, each value clamped to ``[1, n]``.

    Raises
    ------
    DataError
        If ``K`` is not square in its last two axes, or holds NaN or infinity.
    ConfigError
        If ``q`` or ``tol`` is invalid.

    Notes
    -----
    λ = eigvalsh(K / n) in float64; λᵢ ← 0 where λᵢ < tol·max λ; λ ← λ / Σλ;
    VS_q = exp(−Σ λᵢ log λᵢ) for q = 1, 1 / max λ for q = ∞, (Σ λᵢ^q)^{1/(1−q)} otherwise.

    Examples
    --------
    >>> vendi_score(np.eye(4)).round(6)
    np.float64(4.0)
    >>> vendi_score(np.ones((3, 3))).round(6)
    np.float64(1.0)
    >>> block = np.kron(np.eye(2), np.ones((3, 3)))   # two clusters of three
    >>> vendi_score(block, q=2).round(6)
    np.float64(2.0)
    """
    qf = _check_q(q)
    if not (isinstance(tol, int | float) and 0 <= tol < 1):
        raise ConfigError(f"vendi tol: expected a number in [0, 1); got {tol!r}.")
    arr = np.asarray(K, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise DataError(f"vendi_score K: expected shape (..., n, n); got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise DataError("vendi_score K: expected finite similarities; got NaN or infinity.")
    n = arr.shape[-1]
    if n == 0:
        raise DataError("vendi_score K: expected at least one item; got n = 0.")
    lam = np.linalg.eigvalsh(arr / n)
    lam_max = lam.max(axis=-1, keepdims=True)
    lam = np.where(lam >= tol * lam_max, lam, 0.0)
    lam = lam / lam.sum(axis=-1, keepdims=True)
    return np.clip(hill_number(lam, q=qf), 1.0, float(n))


def vendi_score_dual(
    X: ArrayLike, *, q: float = 1.0, tol: float = DEFAULT_TOL
) -> NDArray[np.float64]:
    """Vendi Score from unit-norm embeddings ``X`` of shape ``(..., n, d)`` via ``XᵀX / n``.

    ``XᵀX / n`` has the same nonzero spectrum as ``X Xᵀ / n``, so this equals
    ``vendi_score(X @ Xᵀ)``; it is cheaper only when ``n > d``.

    Examples
    --------
    >>> X = np.eye(3)[[0, 0, 1, 2]]           # 4 items, two identical
    >>> bool(np.isclose(vendi_score_dual(X), vendi_score(X @ X.T)))
    True
    """
    qf = _check_q(q)
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim < 2:
        raise DataError(f"vendi_score_dual X: expected shape (..., n, d); got {arr.shape}.")
    n = arr.shape[-2]
    cov = np.swapaxes(arr, -1, -2) @ arr / n
    lam = np.linalg.eigvalsh(cov)
    lam_max = lam.max(axis=-1, keepdims=True)
    lam = np.where(lam >= tol * lam_max, lam, 0.0)
    lam = lam / lam.sum(axis=-1, keepdims=True)
    return np.clip(hill_number(lam, q=qf), 1.0, float(n))


def gram_blocks(
    vectors: NDArray[np.floating], groups: Sequence[NDArray[np.int64]]
) -> list[NDArray[np.float64]]:
    """One Gram matrix ``E Eᵀ`` per group of row indices into ``vectors`` (float64).

    Used once per question: every configuration's similarity matrix is a slice of its
    question's block, so no product is computed twice.
    """
    out = []
    for g in groups:
        e = np.asarray(vectors[g], dtype=np.float64)
        out.append(e @ e.T)
    return out


def slice_grams(block: NDArray[np.float64], local: NDArray[np.int64]) -> NDArray[np.float64]:
    """Stack the sub-matrices ``block[idx][:, idx]`` for each row ``idx`` of ``local`` (m, n).

    Examples
    --------
    >>> G = np.arange(9.0).reshape(3, 3)
    >>> slice_grams(G, np.array([[0, 2]]))[0]
    array([[0., 2.],
           [6., 8.]])
    """
    return block[local[:, :, None], local[:, None, :]]


def pairwise_cosine_distance(K: ArrayLike) -> NDArray[np.float64]:
    """Mean cosine distance ``1 − K_ij`` over the pairs ``i < j`` of each ``(..., n, n)`` matrix.

    Examples
    --------
    >>> float(pairwise_cosine_distance(np.eye(3)))
    1.0
    """
    arr = np.asarray(K, dtype=np.float64)
    n = arr.shape[-1]
    if n < 2:
        raise DataError(f"pairwise_cosine_distance: expected n >= 2 items; got n = {n}.")
    iu = np.triu_indices(n, k=1)
    return np.asarray((1.0 - arr[..., iu[0], iu[1]]).mean(axis=-1), dtype=np.float64)
