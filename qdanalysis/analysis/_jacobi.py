"""Eigenvalues of many small symmetric matrices at once: cyclic Jacobi in lanes (numba).

Imported only when numba is installed (see :func:`qdanalysis.analysis.diversity.vendi_backend`).
The batch is cut into groups of :data:`LANES` matrices stored structure-of-arrays,
``a[i, j, lane]``, so every step of a Jacobi rotation is one loop over lanes that LLVM turns
into SIMD instructions: :data:`LANES` matrices rotate together, branch-free. Groups run in
parallel over the cores (``prange``).

Each sweep rotates every pair ``(p, q)`` once (Rutishauser's formulas). Cyclic Jacobi converges
quadratically; sweeps stop once, in every lane, the off-diagonal mass is below
``tol² · ‖A‖²_F`` (about 5–7 sweeps for ``n = 6`` at ``tol = 1e-14``), or after ``max_sweeps``.
Every rotation is orthogonal, so the diagonal left over equals the spectrum to about
``tol · ‖A‖_F`` (the off-diagonal norm bounds each eigenvalue's error).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray

__all__ = ["LANES", "eigvalsh_lanes"]

#: Matrices rotated together: a multiple of the SIMD width (8 float64 in AVX-512), larger to
#: give the out-of-order core independent sqrt/divide chains between lanes.
LANES = 32


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _rotate_pair(a: NDArray[np.float64], n: int, p: int, q: int, w: NDArray[np.float64]) -> None:
    """Annihilate ``a[q, p]`` (``p < q``) in every lane; ``w`` is (2, lanes) scratch for
    ``s = sin θ`` and ``tau = s / (1 + cos θ)``. Only the lower triangle is stored."""
    lanes = a.shape[2]  # a run-time count, so LLVM vectorises the loops instead of unrolling
    for lane in range(lanes):
        apq = a[q, p, lane]
        d = a[q, q, lane] - a[p, p, lane]
        # t = tan θ = sgn(d) 2 a_pq / (|d| + sqrt(d² + 4 a_pq²)): the smaller root, no division
        # by a_pq; 0 when a_pq = 0 (the max keeps 0/0 out when d = a_pq = 0).
        den = abs(d) + math.sqrt(d * d + 4.0 * apq * apq)
        t = math.copysign(2.0, d) * apq / max(den, 1e-300)
        c = 1.0 / math.sqrt(1.0 + t * t)
        s = t * c
        w[0, lane] = s
        w[1, lane] = s / (1.0 + c)
        a[p, p, lane] -= t * apq
        a[q, q, lane] += t * apq
        a[q, p, lane] = 0.0
    for r in range(n):
        if r == p or r == q:
            continue
        # Lower-triangle positions of (r, p) and (r, q).
        rp0, rp1 = (r, p) if r > p else (p, r)
        rq0, rq1 = (r, q) if r > q else (q, r)
        for lane in range(lanes):
            s = w[0, lane]
            tau = w[1, lane]
            g = a[rp0, rp1, lane]
            h = a[rq0, rq1, lane]
            a[rp0, rp1, lane] = g - s * (h + g * tau)
            a[rq0, rq1, lane] = h + s * (g - h * tau)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _converged(a: NDArray[np.float64], n: int, tol2: float) -> bool:
    """Whether every lane's off-diagonal mass is at most ``tol2`` times its squared norm."""
    for lane in range(LANES):
        off = 0.0
        diag = 0.0
        for i in range(n):
            diag += a[i, i, lane] * a[i, i, lane]
            for j in range(i):
                off += a[i, j, lane] * a[i, j, lane]
        if off > tol2 * (diag + 2.0 * off):
            return False
    return True


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _group_eigvals(
    K: NDArray[np.float64], lo: int, out: NDArray[np.float64], tol2: float, max_sweeps: int
) -> int:
    """Eigenvalues of ``K[lo : lo + LANES]`` into ``out[:, lo : lo + LANES]``; returns the
    sweeps used."""
    m, n = K.shape[0], K.shape[1]
    a = np.zeros((n, n, LANES))
    w = np.empty((2, LANES))
    for lane in range(LANES):
        k = lo + lane
        for i in range(n):
            if k >= m:
                a[i, i, lane] = 1.0  # padding: an identity converges at once
                continue
            for j in range(i + 1):
                # The lower triangle, as numpy's eigvalsh reads it (UPLO="L").
                a[i, j, lane] = K[k, i, j]
    sweeps = 0
    while sweeps < max_sweeps and not _converged(a, n, tol2):
        for p in range(n - 1):
            for q in range(p + 1, n):
                _rotate_pair(a, n, p, q, w)
        sweeps += 1
    for lane in range(min(LANES, m - lo)):
        for i in range(n):
            out[i, lo + lane] = a[i, i, lane]
    return sweeps


@nb.njit(cache=True, parallel=True, error_model="numpy")
def _eigvals_all(
    K: NDArray[np.float64], out: NDArray[np.float64], tol2: float, max_sweeps: int
) -> int:
    groups = (K.shape[0] + LANES - 1) // LANES
    most = 0
    for g in nb.prange(groups):
        most = max(most, _group_eigvals(K, g * LANES, out, tol2, max_sweeps))
    return most


def eigvalsh_lanes(
    K: NDArray[np.float64], *, tol: float = 1e-14, max_sweeps: int = 30
) -> tuple[NDArray[np.float64], int]:
    """Eigenvalues (unsorted) of each symmetric ``(m, n, n)`` float64 matrix, and the most
    sweeps any group needed.

    Only the lower triangle is read. The result is an ``(m, n)`` view of an ``(n, m)`` array:
    reductions over the eigenvalues of each matrix then run along rows, vectorised.
    """
    arr = np.ascontiguousarray(K, dtype=np.float64)
    m, n = arr.shape[0], arr.shape[-1]
    out = np.empty((n, m))
    if m == 0:
        return out.T, 0
    sweeps = _eigvals_all(arr, out, tol * tol, max_sweeps)
    return out.T, int(sweeps)
