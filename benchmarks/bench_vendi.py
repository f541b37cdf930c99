"""Batched Vendi Score versus the vendi-score package called once per group, and the numba
(batched cyclic Jacobi) eigenvalue backend versus numpy's batched ``eigvalsh``."""

from __future__ import annotations

import math
import warnings

import numpy as np

from qdanalysis.analysis.diversity import _NUMBA_MAX_N, vendi_backend, vendi_score

from ._common import Result, goal_met, paired

SECTION = "vendi"


def random_grams(n_groups: int, n: int, *, d: int = 384, seed: int = 0) -> np.ndarray:
    """Cosine Gram matrices of unit vectors with shared structure (like MoA outputs).

    Each group's vectors are a common direction plus noise, and a quarter of the groups hold
    an exact duplicate (T=0 proposers), so spectra include zero eigenvalues.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_groups, n, n))
    step = max(1, 200_000 // (n * d))
    for s in range(0, n_groups, step):
        m = min(step, n_groups - s)
        base = rng.standard_normal((m, 1, d))
        e = base + rng.uniform(0.3, 2.0, (m, 1, 1)) * rng.standard_normal((m, n, d))
        dup = rng.random(m) < 0.25
        e[dup, 1] = e[dup, 0]
        e /= np.linalg.norm(e, axis=-1, keepdims=True)
        out[s : s + m] = e @ np.swapaxes(e, -1, -2)
    return out


def _package_loop(K: np.ndarray, q: float) -> np.ndarray:
    from vendi_score import vendi

    with warnings.catch_warnings():
        # vendi-score 0.0.3 touches the deprecated scipy.sparse.csr namespace on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The package spells the order infinity "inf" (a float inf gives NaN there).
        qp = "inf" if math.isinf(q) else q
        return np.array([vendi.score_K(k, q=qp) for k in K])


def _threads() -> str:
    try:
        import numba
    except ImportError:
        return ""
    return f", {numba.get_num_threads()} numba threads"


def _row(p, ref, ours, n, n_groups, q, baseline, candidate, goal, threshold):
    diff = float(np.max(np.abs(ref - ours)))
    r = p.result(
        section=SECTION,
        benchmark=f"vendi q={q:g}",
        size=f"{n_groups:,} groups of {n}",
        baseline=baseline,
        candidate=candidate,
        goal=goal,
        agreement=f"max |diff| {diff:.1e}",
        note="float64" + _threads(),
    )
    r.met = goal_met(r.ratio, threshold) if diff <= 1e-9 else "no (agreement)"
    return r


def run(*, quick: bool, repeats: int) -> list[Result]:
    """Each order against the package loop, and the Jacobi backend against numpy's eigvalsh."""
    sizes = [(6, 4_000)] if quick else [(6, 100_000), (12, 50_000), (16, 20_000), (24, 10_000)]
    backend = vendi_backend()
    results = []
    for n, n_groups in sizes:
        K = random_grams(n_groups, n, seed=n)
        auto = backend if n <= _NUMBA_MAX_N else "numpy"  # what auto takes at this n
        for q in (1.0, 2.0, math.inf):
            route = "closed form (tr K)²/‖K‖²_F" if q == 2 else f"auto: {auto}"
            # (baseline, candidate, labels, goal, repeats): the package loop is the slow side,
            # so fewer repeats where its time is large.
            pairs = [
                (
                    lambda K=K, q=q: _package_loop(K, q),
                    lambda K=K, q=q: vendi_score(K, q=q),
                    ("vendi_score.vendi.score_K loop", f"qdanalysis vendi_score ({route})"),
                    (">= 50x at <= 1e-9", 50),
                    repeats if n <= 12 else max(1, repeats - 1),
                )
            ]
            if q != 2 and backend.startswith("numba"):
                pairs.append(
                    (
                        lambda K=K, q=q: vendi_score(K, q=q, backend="numpy"),
                        lambda K=K, q=q: vendi_score(K, q=q, backend="numba"),
                        (
                            "vendi_score backend='numpy' (batched eigvalsh)",
                            f"vendi_score backend='numba' ({backend}, batched Jacobi)",
                        ),
                        ("> 1x at <= 1e-9", 1),
                        repeats,
                    )
                )
            for base, cand, (bl, cl), (goal, threshold), reps in pairs:
                p, ref, ours = paired(base, cand, reps)
                row = _row(p, ref, ours, n, n_groups, q, bl, cl, goal, threshold)
                results.append(row)
    return results
