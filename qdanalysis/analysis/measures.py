"""Alternative quality and diversity measures: the choices the paper left open, side by side.

The paper (arXiv 2502.00674) measures quality as the mean of the proposers' accuracies and
diversity as the Vendi Score (order 1) of output embeddings, averaged over questions. Its Table 5
tries two other quality aggregators whose formulas are not published, and it names neither the
embedding model nor how Vendi Scores are pooled. This module computes, for every configuration of
an :func:`~qdanalysis.analysis.pipeline.analyze` run, all the measures below in one table, so that
:func:`qdanalysis.analysis.stats.sensitivity_table` can refit the regression once per combination.

Quality (per configuration, in %): ``quality_mean`` and the K-Norm / Centered-1/K-Norm families
(:func:`k_norm`, :func:`centered_k_norm`) applied to per-slot accuracies. Diversity: Vendi Score
of orders 0.5, 1, 2 and ∞, mean pairwise cosine distance, number and entropy of distinct answer
keys (per question, then averaged), and the pooled Vendi Score (:func:`pooled_vendi`).

Neighbours: :mod:`qdanalysis.analysis.qdtable` (slot index, pair measures),
:mod:`qdanalysis.analysis.diversity`
(Vendi), :mod:`qdanalysis.analysis.stats` (the fits over these columns).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, DataError
from .diversity import DEFAULT_TOL, pairwise_cosine_distance, slice_grams, vendi_score

__all__ = [
    "DIVERSITY_LABELS",
    "QUALITY_LABELS",
    "HashingEmbedder",
    "answer_count",
    "answer_entropy",
    "centered_k_norm",
    "k_norm",
    "label",
    "measure_columns",
    "measure_table",
    "pooled_vendi",
]

#: Readable names of the diversity columns of :func:`measure_table`.
DIVERSITY_LABELS = {
    "diversity_vendi_q0.5": "Vendi q=0.5",
    "diversity_vendi_q1": "Vendi q=1 (paper)",
    "diversity_vendi_q2": "Vendi q=2",
    "diversity_vendi_qinf": "Vendi q=∞",
    "diversity_cosine": "mean cosine distance",
    "diversity_answers": "distinct answers",
    "diversity_answer_entropy": "answer entropy",
    "diversity_pooled_vendi": "pooled Vendi",
}
#: Readable names of the quality columns of :func:`measure_table` (K = 2, 3, 4).
QUALITY_LABELS = {
    "quality_mean": "mean (paper)",
    **{f"quality_knorm_k{k}": f"K-Norm K={k}" for k in (2, 3, 4)},
    **{f"quality_cknorm_k{k}": f"Centered-1/K-Norm K={k}" for k in (2, 3, 4)},
}


def _check_k(k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating) or k < 1:
        raise ConfigError(f"K: expected a number >= 1; got {k!r}.")
    return float(k)


def k_norm(quality: ArrayLike, *, k: float = 2.0, axis: int = -1) -> NDArray[np.float64]:
    """K-Norm of per-slot qualities: the power mean of order K.

    Parameters
    ----------
    quality
        Per-slot accuracies in [0, 1] along ``axis``.
    k
        Order K >= 1; K = 1 is the plain mean.
    axis
        The slot axis.

    Returns
    -------
    numpy.ndarray
        float64, ``axis`` removed.

    Notes
    -----
    q_K = ((1/n) Σᵢ qᵢᴷ)^{1/K}. **Assumption**: the paper (Table 5) names the measure but not its
    formula; this reading rewards the strongest slots as K grows and reduces to the mean at K = 1,
    as Table 5's K = 1 column requires.

    Examples
    --------
    >>> float(k_norm([0.2, 0.4, 0.6], k=1).round(12))
    0.4
    >>> float(k_norm([0.0, 1.0], k=2).round(4))
    0.7071
    """
    kf = _check_k(k)
    q = np.asarray(quality, dtype=np.float64)
    return np.asarray(np.mean(q**kf, axis=axis) ** (1.0 / kf), dtype=np.float64)


def centered_k_norm(
    quality: ArrayLike, *, k: float = 2.0, center: float, axis: int = -1
) -> NDArray[np.float64]:
    """Centered-1/K-Norm of per-slot qualities: a power mean of order 1/K around ``center``.

    Parameters
    ----------
    quality
        Per-slot accuracies in [0, 1] along ``axis``, none below ``center``.
    k
        K >= 1; K = 1 is the plain mean.
    center
        The centre c; the toolkit uses the lowest accuracy in the proposer pool.
    axis
        The slot axis.

    Returns
    -------
    numpy.ndarray
        float64, ``axis`` removed.

    Raises
    ------
    DataError
        If a quality lies below ``center`` (its root is undefined).

    Notes
    -----
    q = c + ((1/n) Σᵢ (qᵢ − c)^{1/K})^{K}. **Assumption**: the paper (Table 5) gives no formula;
    this reading penalises weak slots (a concave mean of the excess over the weakest model) and
    reduces to the mean at K = 1.

    Examples
    --------
    >>> float(centered_k_norm([0.2, 0.4, 0.6], k=1, center=0.2).round(12))
    0.4
    >>> float(centered_k_norm([0.2, 0.6], k=2, center=0.2).round(4))
    0.3
    """
    kf = _check_k(k)
    q = np.asarray(quality, dtype=np.float64)
    excess = q - float(center)
    if (excess < -1e-12).any():
        raise DataError(
            f"centered_k_norm: expected qualities >= center {center!r}; got a minimum of "
            f"{float(q.min())!r}. Use the lowest accuracy in the pool as the centre."
        )
    excess = np.clip(excess, 0.0, None)
    return np.asarray(
        float(center) + np.mean(excess ** (1.0 / kf), axis=axis) ** kf, dtype=np.float64
    )


def _key_counts(codes: NDArray[np.int64]) -> NDArray[np.int64]:
    """``(m, n)`` codes -> ``(m, n)`` count of each slot's key among the row (0 for -1)."""
    valid = codes >= 0
    same = (codes[:, :, None] == codes[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    return np.asarray(same.sum(axis=2), dtype=np.int64)


def answer_count(codes: ArrayLike) -> NDArray[np.float64]:
    """Number of distinct answer keys per row of slot codes (``-1`` = no answer, not counted).

    Examples
    --------
    >>> answer_count([[3, 3, 5, -1], [-1, -1, -1, -1]])
    array([2., 0.])
    """
    c = np.asarray(codes, dtype=np.int64)
    cnt = _key_counts(c)
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
    cnt = _key_counts(c).astype(np.float64)
    n_ans = (c >= 0).sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(cnt > 0, cnt / np.maximum(n_ans, 1.0), 1.0)
        # Summing over slots counts key a m_a times: divide by the count, sum -p log p per key.
        h = -np.where(cnt > 0, np.log(p) / np.maximum(n_ans, 1.0), 0.0).sum(axis=1)
    return np.asarray(h + 0.0, dtype=np.float64)


def pooled_vendi(
    vectors: ArrayLike, *, q: float = 1.0, tol: float = DEFAULT_TOL
) -> NDArray[np.float64]:
    """Vendi Score of a pooled set of unit vectors ``(..., m, d)``, through the dual form.

    Notes
    -----
    VS = Hill_q(eigvals(XᵀX / m)), the same nonzero spectrum as ``X Xᵀ / m``; the dual form
    costs O(m d²) instead of O(m³), which pays off for a configuration's m = n × Q outputs.
    Scores lie in [1, min(m, d)], so pooled scores are not on the per-question scale [1, n].

    Examples
    --------
    >>> float(pooled_vendi(np.eye(3)[[0, 1, 2, 0, 1, 2]]).round(6))
    3.0
    """
    x = np.asarray(vectors, dtype=np.float64)
    m = x.shape[-2]
    cov = np.swapaxes(x, -1, -2) @ x / m
    # The trace of XᵀX/m is 1 for unit rows; vendi_score normalises eigenvalues itself, and
    # its unit-diagonal check does not apply to the dual matrix, so compute directly.
    from .diversity import hill_number

    lam = np.linalg.eigvalsh(cov)
    lam = np.where(lam >= tol * lam.max(axis=-1, keepdims=True), lam, 0.0)
    lam = lam / lam.sum(axis=-1, keepdims=True)
    return np.asarray(hill_number(lam, q=q), dtype=np.float64)


class HashingEmbedder:
    """A model-free embedding: L2-normalised hashed character n-gram counts (scikit-learn).

    A cheap, deterministic second "embedding model" for sensitivity checks: it sees surface
    form (shared character 3–5-grams) rather than meaning, so a result that holds under both it
    and a sentence encoder does not hinge on one encoder's geometry. No truncation.

    Parameters
    ----------
    n_features
        Hash buckets (the vector dimension).
    ngram_range
        Character n-gram lengths (within word boundaries).

    Examples
    --------
    >>> e = HashingEmbedder(n_features=64)
    >>> v = e.encode(["abc abc", "abc abc", "xyz"])
    >>> v.shape, bool(np.allclose(v[0], v[1]))
    ((3, 64), True)
    """

    def __init__(self, *, n_features: int = 512, ngram_range: tuple[int, int] = (3, 5)) -> None:
        if not isinstance(n_features, int) or n_features < 2:
            raise ConfigError(
                f"HashingEmbedder n_features: expected an int >= 2; got {n_features!r}."
            )
        self.n_features = n_features
        self.ngram_range = tuple(ngram_range)
        self.name = f"hashing-char_wb-{ngram_range[0]}-{ngram_range[1]}-{n_features}"
        self.max_seq_length: int | None = None
        self.device = "cpu"

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Unit rows ``(n, n_features)``; an empty text maps to a fixed unit vector."""
        from sklearn.feature_extraction.text import HashingVectorizer

        hv = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            n_features=self.n_features,
            alternate_sign=False,
            norm="l2",
        )
        x: NDArray[np.float32] = hv.transform(list(texts)).toarray().astype(np.float32)
        empty = ~(x.any(axis=1))
        x[empty, 0] = 1.0
        return x

    def token_counts(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Character counts (nothing is truncated)."""
        return np.array([len(t) for t in texts], dtype=np.int64)


def _codes(frame: pd.DataFrame) -> NDArray[np.int64]:
    keys = frame["answer_key"]
    codes, _ = pd.factorize(keys.where(keys.notna(), None), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


def _nanmean_rows(x: NDArray[np.float64], valid: NDArray[np.bool_]) -> NDArray[np.float64]:
    s = np.where(valid, x, 0.0).sum(axis=1)
    n = valid.sum(axis=1)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def measure_table(
    analysis: Any,
    outputs: pd.DataFrame,
    *,
    embeddings: Any = None,
    ks: Sequence[float] = (2, 3, 4),
    vendi_orders: Sequence[float] = (0.5, 1.0, 2.0, math.inf),
    pooled: bool = True,
    tol: float = DEFAULT_TOL,
    quality_source: str = "slot",
) -> pd.DataFrame:
    """Every quality and diversity measure of every configuration of an analysis.

    Parameters
    ----------
    analysis
        A :class:`~qdanalysis.analysis.pipeline.Analysis` (its configurations, parameters and,
        unless
        ``embeddings`` is given, its embeddings).
    outputs
        The outputs table the analysis ran on.
    embeddings
        Alternative :class:`~qdanalysis.analysis.embeddings.Embeddings` of the same texts (another
        embedding model); default: the analysis's.
    ks
        K values of the K-Norm families (K = 1 is ``quality_mean``).
    vendi_orders
        Vendi orders q of the per-question scores.
    pooled
        Also compute the pooled Vendi Score per configuration (order 1, see Notes).
    tol
        Vendi eigenvalue tolerance.
    quality_source
        ``"slot"``: a slot's quality is the accuracy of its own outputs over the configuration's
        questions; ``"model"``: the overall accuracy of the slot's proposer type in the dataset
        (the paper's definition).

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, configuration): ``dataset, config_id, n_questions, performance``
        (plurality vote over answer keys, %), ``quality_mean``, ``quality_knorm_k<K>``,
        ``quality_cknorm_k<K>`` (%), ``diversity_vendi_q<q>`` (``q0.5, q1, q2, qinf``),
        ``diversity_cosine``, ``diversity_answers``, ``diversity_answer_entropy`` and
        ``diversity_pooled_vendi``, each per question then averaged, except pooled.

    Notes
    -----
    Pairs missing a slot's output are left out of every measure (as in
    :func:`~qdanalysis.analysis.qdtable.measure_pairs`). **Assumptions**: the centre of the
    Centered-1/K-Norm is the lowest slot quality available in the dataset (lowest sample
    accuracy for ``"slot"``, or lower when dropped pairs leave a slot's questions less
    accurate; lowest model accuracy for ``"model"``); the pooled Vendi Score of
    a configuration is the Vendi Score (q = 1) of its n slots under the question-averaged
    similarity K̄ = (1/Q) Σ_q K_q (pool the kernels, then take one score) instead of the mean of
    per-question scores; K̄ is PSD with a unit diagonal, so the score stays on [1, n]. (The
    Vendi Score of all n × Q outputs as one set, :func:`pooled_vendi`, mixes in the spread
    between questions and costs one d × d eigendecomposition per configuration; it is left out
    of this table.)
    """
    from ..outputs import add_proposer_column, proposer_rows
    from .performance import plurality_vote_scores
    from .qdtable import slot_index

    if quality_source not in ("slot", "model"):
        raise ConfigError(f"quality_source: expected 'slot' or 'model'; got {quality_source!r}.")
    emb = embeddings if embeddings is not None else analysis.embeddings
    key = list(analysis.parameters.get("proposer_key", ["model"]))
    rows = add_proposer_column(proposer_rows(outputs), key)
    tables = []
    for ds in sorted(analysis.configs):
        frame = rows[rows["dataset"] == ds].reset_index(drop=True)
        if frame.empty:
            raise DataError(f"measure_table: dataset {ds!r} has no proposer rows in outputs.")
        by_size: dict[int, list[Any]] = {}
        for c in analysis.configs[ds]:
            by_size.setdefault(c.n_proposers, []).append(c)
        erow = emb.rows_for(frame["output"].tolist())
        vecs = emb.vectors
        correct_all = frame["correct"].to_numpy(dtype=np.float64)
        codes_all = _codes(frame)
        type_acc = frame.groupby("proposer")["correct"].mean()
        sample_acc = frame.groupby(["proposer", "sample_index"])["correct"].mean()
        center = float(type_acc.min() if quality_source == "model" else sample_acc.min())
        for group in by_size.values():
            idx = slot_index(frame, group)
            valid = idx.valid
            safe = np.where(idx.rows >= 0, idx.rows, 0)
            C, Q, n = safe.shape
            corr = correct_all[safe]
            codes = codes_all[safe]
            perf = plurality_vote_scores(codes.reshape(-1, n), corr.reshape(-1, n)).reshape(C, Q)
            out: dict[str, Any] = {
                "dataset": ds,
                "config_id": [c.config_id for c in group],
                "n_questions": valid.sum(axis=1),
                "performance": 100 * _nanmean_rows(perf, valid),
            }
            if quality_source == "slot":
                w = valid[:, :, None]
                slot_q = np.where(w, corr, 0.0).sum(axis=1) / np.maximum(w.sum(axis=1), 1)
            else:
                slot_q = np.array([[float(type_acc[s.model]) for s in c.proposers] for c in group])
            out["quality_mean"] = 100 * slot_q.mean(axis=1)
            # A slot's accuracy over a configuration's valid questions can dip below its
            # sample's overall accuracy when pairs are dropped: the centre covers both.
            c0 = min(center, float(slot_q.min()))
            for k in ks:
                out[f"quality_knorm_k{k:g}"] = 100 * k_norm(slot_q, k=k)
                out[f"quality_cknorm_k{k:g}"] = 100 * centered_k_norm(slot_q, k=k, center=c0)
            # Per-question Gram slices, one stack for all valid pairs.
            ci, qi = np.nonzero(valid)
            grams = np.empty((ci.size, n, n))
            by_q = frame.groupby("question_id", sort=False).indices
            local = np.empty(len(frame), dtype=np.int64)
            for q_pos, qid in enumerate(idx.question_ids):
                sel = np.flatnonzero(qi == q_pos)
                if sel.size == 0:
                    continue
                members = by_q[qid]
                local[members] = np.arange(members.size)
                e = vecs[erow[members]].astype(np.float64)
                grams[sel] = slice_grams(e @ e.T, local[idx.rows[ci[sel], q_pos, :]])
            for qv in vendi_orders:
                name = "qinf" if math.isinf(qv) else f"q{qv:g}"
                d = np.full((C, Q), np.nan)
                d[ci, qi] = vendi_score(grams, q=qv, tol=tol)
                out[f"diversity_vendi_{name}"] = _nanmean_rows(d, valid)
            d = np.full((C, Q), np.nan)
            d[ci, qi] = pairwise_cosine_distance(grams)
            out["diversity_cosine"] = _nanmean_rows(d, valid)
            out["diversity_answers"] = _nanmean_rows(
                answer_count(codes.reshape(-1, n)).reshape(C, Q), valid
            )
            out["diversity_answer_entropy"] = _nanmean_rows(
                answer_entropy(codes.reshape(-1, n)).reshape(C, Q), valid
            )
            if pooled:
                kbar = np.zeros((C, n, n))
                np.add.at(kbar, ci, grams)
                kbar /= np.maximum(valid.sum(axis=1), 1)[:, None, None]
                out["diversity_pooled_vendi"] = vendi_score(kbar, q=1.0, tol=tol)
            tables.append(pd.DataFrame(out))
    return (
        pd.concat(tables, ignore_index=True)
        .sort_values(["dataset", "config_id"])
        .reset_index(drop=True)
    )


def measure_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The quality and diversity columns present in a :func:`measure_table` result."""
    q = [c for c in table.columns if c.startswith("quality_")]
    d = [c for c in table.columns if c.startswith("diversity_")]
    return q, d


def label(column: str, labels: Mapping[str, str] | None = None) -> str:
    """A readable name of a measure column (falls back to the column name)."""
    table = {**QUALITY_LABELS, **DIVERSITY_LABELS, **(labels or {})}
    return table.get(column, column)
