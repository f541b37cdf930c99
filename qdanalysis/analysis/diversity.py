"""Diversity: the Vendi Score of proposer-output embeddings, batched.

The Vendi Score of ``n`` items with similarity matrix ``K`` (unit diagonal) is the Hill number
of order ``q`` of the eigenvalues of ``K / n``: the effective number of distinct items, between
1 (all identical) and ``n`` (all orthogonal). This module measures stacks of Gram matrices
(Vendi Scores, mean cosine distance) or rows of answer-key codes (answer count and entropy).
The eigenvalues of a stack come from :mod:`qdanalysis.analysis._jacobi` (cyclic Jacobi on
lanes of matrices, numba) when numba is installed, else from numpy's batched ``eigvalsh``, the
reference (:func:`vendi_backend`). Embeddings come from :mod:`qdanalysis.analysis.embeddings`,
and the engine :mod:`qdanalysis.analysis.pairs` slices each configuration's Gram matrix out of
its question's Gram block and stacks the slices into one call per chunk.

A set of one item has Vendi Score 1 (every order), one distinct answer and answer entropy 0;
its mean pairwise cosine distance is undefined (NaN).

References
----------
Friedman and Dieng (2023), "The Vendi Score: A Diversity Evaluation Metric for Machine Learning",
TMLR. Pasarkar and Dieng (2024), "Cousins of the Vendi Score" (orders q other than 1).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, DataError
from ..votes import key_counts

__all__ = [
    "DEFAULT_TOL",
    "answer_count",
    "answer_entropy",
    "hill_number",
    "pairwise_cosine_distance",
    "slice_grams",
    "vendi_backend",
    "vendi_score",
    "vendi_score_dual",
]

#: Eigenvalues below ``DEFAULT_TOL * max eigenvalue`` are treated as zero (round-off).
DEFAULT_TOL = 1e-10


def _check_q(q: float, *, name: str = "vendi order q") -> float:
    if isinstance(q, str):
        if q.lower() in ("inf", "infinity"):
            return math.inf
        raise ConfigError(f"{name}: expected a number >= 0 or 'inf'; got {q!r}.")
    if not isinstance(q, int | float | np.floating | np.integer) or not q >= 0:
        raise ConfigError(f"{name}: expected a number >= 0 or math.inf; got {q!r}.")
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
        # log only where w > 0 (0 log 0 = 0): one pass, no masked temporaries.
        logw = np.log(w, out=np.zeros_like(w), where=w > 0)
        logw *= w
        out = np.exp(-logw.sum(axis=-1))
    elif math.isinf(qf):
        out = 1.0 / w.max(axis=-1)
    elif qf == 0.0:
        out = (w > 0).sum(axis=-1).astype(np.float64)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            powered = np.where(w > 0, np.power(np.where(w > 0, w, 1.0), qf), 0.0)
        out = np.power(powered.sum(axis=-1), 1.0 / (1.0 - qf))
    return np.asarray(out, dtype=np.float64)


_DEVICES = ("cpu", "auto", "cuda")
_BACKENDS = ("auto", "numba", "numpy")

#: ``backend="auto"`` uses numba from this many matrices on (smaller stacks never import it:
#: numpy answers them in microseconds, and importing numba costs a fraction of a second)...
_NUMBA_MIN_BATCH = 64
#: ... and up to this size (measured faster than LAPACK up to 24; its work grows as n³ per sweep).
_NUMBA_MAX_N = 24


@functools.cache
def _numba_version() -> str | None:
    if importlib.util.find_spec("numba") is None:
        return None
    import numba

    return str(numba.__version__)


def vendi_backend() -> str:
    """The CPU eigenvalue backend of :func:`vendi_score` with ``backend="auto"``, for sidecars.

    ``"numba <version>"`` (batched cyclic Jacobi, for stacks of at least 64 matrices of size
    up to 24; smaller work goes to numpy) when numba is importable, else ``"numpy"`` (batched
    ``numpy.linalg.eigvalsh``, the reference). Both agree to 1e-12.

    Examples
    --------
    >>> vendi_backend().split()[0] in ("numba", "numpy")
    True
    """
    version = _numba_version()
    return "numpy" if version is None else f"numba {version}"


def _check_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ConfigError(f"vendi backend: expected one of {list(_BACKENDS)}; got {backend!r}.")
    if backend == "numba" and _numba_version() is None:
        raise ConfigError(
            "vendi backend: expected numba to be importable; got backend='numba' but numba is "
            "not installed. Install it (pip install numba) or use backend='auto' or 'numpy'."
        )
    return backend


def _eigvalsh(arr: NDArray[np.float64], backend: str) -> NDArray[np.float64]:
    """Eigenvalues of each matrix of a ``(..., n, n)`` stack (lower triangle read)."""
    n = arr.shape[-1]
    m = arr.size // (n * n)
    if backend == "auto":
        ok = _numba_version() is not None and m >= _NUMBA_MIN_BATCH and n <= _NUMBA_MAX_N
        backend = "numba" if ok else "numpy"
    if backend == "numpy":
        return np.asarray(np.linalg.eigvalsh(arr), dtype=np.float64)
    from ._jacobi import eigvalsh_lanes

    lam, _ = eigvalsh_lanes(arr.reshape(m, n, n))
    # lam is eigenvalue-major in memory; reshape keeps that only for a flat stack.
    return lam if arr.ndim == 3 else lam.reshape(*arr.shape[:-1])


def _torch_cuda() -> Any:
    """torch when it is importable and sees a CUDA device, else None (imported only on demand)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _check_tol(tol: float, *, name: str = "vendi tol") -> float:
    if not (isinstance(tol, int | float | np.floating) and 0 <= tol < 1):
        raise ConfigError(f"{name}: expected a number in [0, 1); got {tol!r}.")
    return float(tol)


def _vendi_from_eigenvalues(lam: NDArray[np.float64], qf: float, tol: float, n: int) -> Any:
    lam_max = lam.max(axis=-1, keepdims=True)
    lam = np.where(lam >= tol * lam_max, lam, 0.0)
    lam /= lam.sum(axis=-1, keepdims=True)
    return np.clip(hill_number(lam, q=qf), 1.0, float(n))


def _vendi_q2(arr: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    # Σλ = tr K and Σλ² = ‖K‖²_F for symmetric K, so VS₂ = (tr K)² / ‖K‖²_F: no eigenvalues.
    tr = np.einsum("...ii->...", arr)
    fro = np.einsum("...ij,...ij->...", arr, arr)
    return np.asarray(np.clip(tr * tr / fro, 1.0, float(n)), dtype=np.float64)


def _vendi_score_torch(
    arr: NDArray[np.float64], qf: float, tol: float, *, device: str, dtype: str = "float64"
) -> NDArray[np.float64]:
    """The eigenvalue route of :func:`vendi_score` in torch (any device), returned as numpy."""
    import torch

    n = arr.shape[-1]
    tdt = torch.float64 if dtype == "float64" else torch.float32
    K = torch.as_tensor(arr, dtype=tdt, device=device)
    if qf == 2.0:
        tr = torch.diagonal(K, dim1=-2, dim2=-1).sum(-1)
        fro = (K * K).sum((-2, -1))
        out = (tr * tr / fro).clamp(1.0, float(n))
        return np.asarray(out.double().cpu().numpy(), dtype=np.float64)
    lam = torch.linalg.eigvalsh(K / n)
    lam_max = lam.max(dim=-1, keepdim=True).values
    lam = torch.where(lam >= tol * lam_max, lam, torch.zeros((), dtype=tdt, device=lam.device))
    lam = lam / lam.sum(dim=-1, keepdim=True)
    pos = lam > 0
    safe = torch.where(pos, lam, torch.ones((), dtype=tdt, device=lam.device))
    if qf == 1.0:
        vs = torch.exp(-(torch.where(pos, lam * torch.log(safe), 0.0)).sum(-1))
    elif math.isinf(qf):
        vs = 1.0 / lam.max(dim=-1).values
    elif qf == 0.0:
        vs = pos.sum(-1).to(tdt)
    else:
        vs = torch.where(pos, safe**qf, 0.0).sum(-1) ** (1.0 / (1.0 - qf))
    return np.asarray(vs.clamp(1.0, float(n)).double().cpu().numpy(), dtype=np.float64)


def _check_grams(K: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(K, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise DataError(f"vendi_score K: expected shape (..., n, n); got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise DataError("vendi_score K: expected finite similarities; got NaN or infinity.")
    if arr.shape[-1] == 0:
        raise DataError("vendi_score K: expected at least one item; got n = 0.")
    return arr


def _use_cuda(device: str) -> bool:
    """Whether ``device`` ("auto" or "cuda") runs on CUDA; raises for "cuda" without a GPU."""
    if _torch_cuda() is not None:
        return True
    if device == "cuda":
        raise ConfigError(
            "vendi device: expected an available CUDA device; got 'cuda' but torch is not "
            "installed or sees no GPU. Use device='auto' or 'cpu'."
        )
    return False


def vendi_score(
    K: ArrayLike,
    *,
    q: float = 1.0,
    tol: float = DEFAULT_TOL,
    device: str = "cpu",
    backend: str = "auto",
) -> NDArray[np.float64]:
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
    device
        ``"cpu"`` (default: numpy, float64), ``"cuda"`` (torch on the GPU, float64) or
        ``"auto"`` (CUDA when torch is importable and sees a GPU, else the CPU). Results
        agree to 1e-9.
    backend
        CPU eigenvalues: ``"auto"`` (default: numba's batched Jacobi for stacks of at least 64
        matrices of size up to 24 when numba is installed, else numpy; see
        :func:`vendi_backend`), ``"numba"`` or ``"numpy"`` (``numpy.linalg.eigvalsh``, the
        reference). They agree to 1e-12.

    Returns
    -------
    numpy.ndarray
        float64 of shape ``K.shape[:-2]``, each value clamped to ``[1, n]``.

    Raises
    ------
    DataError
        If ``K`` is not square in its last two axes, or holds NaN or infinity.
    ConfigError
        If ``q``, ``tol``, ``device`` or ``backend`` is invalid, ``device="cuda"`` without a
        GPU, or ``backend="numba"`` without numba.

    Notes
    -----
    λ = eigvalsh(K) / n in float64; λᵢ ← 0 where λᵢ < tol·max λ; λ ← λ / Σλ;
    VS_q = exp(−Σ λᵢ log λᵢ) for q = 1, 1 / max λ for q = ∞, (Σ λᵢ^q)^{1/(1−q)} otherwise.
    For q = 2 no eigenvalues are needed: Σλ = tr K / n and Σλ² = ‖K‖²_F / n², so
    VS₂ = (tr K)² / ‖K‖²_F. It differs from the eigenvalue route only by the eigenvalues the
    tolerance zeroes (each below ``tol · max λ``), i.e. by at most about ``2 n tol`` relative.

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
    tolf = _check_tol(tol)
    backend = _check_backend(backend)
    if device not in _DEVICES:
        raise ConfigError(f"vendi device: expected one of {list(_DEVICES)}; got {device!r}.")
    arr = _check_grams(K)
    n = arr.shape[-1]
    if device != "cpu" and _use_cuda(device):
        return _vendi_score_torch(arr, qf, tolf, device="cuda")
    if qf == 2.0:
        return _vendi_q2(arr, n)
    # eig(K / n) = eig(K) / n; dividing the n eigenvalues is cheaper than the n² entries.
    lam = _eigvalsh(arr, backend) / n
    return np.asarray(_vendi_from_eigenvalues(lam, qf, tolf, n), dtype=np.float64)


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
    lam = _eigvalsh(cov, "auto")
    return np.asarray(_vendi_from_eigenvalues(lam, qf, _check_tol(tol), n), dtype=np.float64)


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

    Returns
    -------
    numpy.ndarray
        float64 of shape ``K.shape[:-2]``; NaN for ``n = 1`` (one item has no pairs, so its
        mean distance is undefined).

    Raises
    ------
    DataError
        If ``K`` is not square in its last two axes or has no items.

    Examples
    --------
    >>> float(pairwise_cosine_distance(np.eye(3)))
    1.0
    >>> pairwise_cosine_distance(np.ones((2, 1, 1)))
    array([nan, nan])
    """
    arr = np.asarray(K, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2] or arr.shape[-1] == 0:
        raise DataError(
            f"pairwise_cosine_distance K: expected shape (..., n, n) with n >= 1; got {arr.shape}."
        )
    n = arr.shape[-1]
    if n == 1:
        return np.full(arr.shape[:-2], np.nan)
    iu = np.triu_indices(n, k=1)
    return np.asarray((1.0 - arr[..., iu[0], iu[1]]).mean(axis=-1), dtype=np.float64)


def answer_count(codes: ArrayLike) -> NDArray[np.float64]:
    """Number of distinct answer keys per row of slot codes (``-1`` = no answer, not counted).

    Examples
    --------
    >>> answer_count([[3, 3, 5, -1], [-1, -1, -1, -1]])
    array([2., 0.])
    """
    cnt = key_counts(codes)
    # Each key with count m contributes m slots of weight 1/m.
    return np.asarray(np.where(cnt > 0, 1.0 / np.maximum(cnt, 1), 0.0).sum(axis=1))


def answer_entropy(codes: ArrayLike) -> NDArray[np.float64]:
    """Shannon entropy (nats) of the answer keys among the slots that have one.

    Notes
    -----
    H = −Σ_a p_a log p_a with p_a the share of answered slots giving key a; 0 when no slot or
    one key answers. ``exp(H)`` is the Hill number of order 1 of the answers.

    Examples
    --------
    >>> answer_entropy([[1, 1, 2, 2], [1, 1, 1, -1]]).round(4)
    array([0.6931, 0.    ])
    """
    c = np.asarray(codes, dtype=np.int64)
    cnt = key_counts(c).astype(np.float64)
    n_ans = (c >= 0).sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(cnt > 0, cnt / np.maximum(n_ans, 1.0), 1.0)
        # Summing over slots counts key a m_a times: divide by the count, sum -p log p per key.
        h = -np.where(cnt > 0, np.log(p) / np.maximum(n_ans, 1.0), 0.0).sum(axis=1)
    return np.asarray(h + 0.0, dtype=np.float64)
