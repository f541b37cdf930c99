"""Sensitivity of the fit to the measures: the choices the paper left open, side by side.

The paper (arXiv 2502.00674) measures quality as the mean of the proposers' accuracies and
diversity as the Vendi Score (order 1) of output embeddings, averaged over questions. Its Table 5
tries two other quality aggregators whose formulas are not published, and it names neither the
embedding model nor how Vendi Scores are pooled. :func:`measure_table` computes, for every
configuration of an :func:`~qdanalysis.analysis.pipeline.analyze` result, all the measures below
by asking the engine (:mod:`qdanalysis.analysis.pairs`) with the analysis's own aggregator,
tolerance and proposer key; :func:`sensitivity_table` refits the regression once per
combination, and its default row (the analysis's own quality and Vendi order, its embedding)
reproduces the analysis's fit.

Quality (per configuration, in %): ``quality_mean`` and the K-Norm / Centered-1/K-Norm families
(:func:`k_norm`, :func:`centered_k_norm`) applied to per-slot accuracies. Diversity: Vendi Score
of orders 0.5, 1, 2 and ∞, mean pairwise cosine distance, number and entropy of distinct answer
keys (per question, then averaged), the pooled Vendi Score of the question-averaged kernel, and
the effective number of independent proposers ``diversity_n_eff`` (from the correlation of the
slots' errors, :func:`~qdanalysis.analysis.qdtable.effective_proposers`). Beside the measures the
table carries ``coverage``, ``selection_loss``, ``error_corr`` and ``length_chars`` (as in the QD
table); :func:`sensitivity_table` adds, per dataset, the default fit with z(length) as a
covariate, to show how β moves when output length is held fixed.

Neighbours: :mod:`qdanalysis.analysis.pairs` (the engine), :mod:`qdanalysis.analysis.diversity`
(the measures), :mod:`qdanalysis.analysis.regression` (the fits).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, DataError, DataWarning
from ..outputs import add_proposer_column, proposer_rows
from .diversity import vendi_score
from .pairs import PairBlock, PairRequest, measure_blocks, vendi_name
from .pipeline import Analysis, AnalysisSpec
from .qdtable import ensemble_measures, selection_loss
from .regression import COLLINEARITY_THRESHOLD, RegressionSpec, compare_terms
from .uncertainty import _fit_quiet

__all__ = [
    "COVARIATES",
    "DIVERSITY_LABELS",
    "QUALITY_LABELS",
    "HashingEmbedder",
    "centered_k_norm",
    "k_norm",
    "label",
    "measure_table",
    "sensitivity_long",
    "sensitivity_table",
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
    "diversity_n_eff": "effective proposers N_eff",
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
        float64 of the shape of ``quality`` without ``axis``.

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


def _wide_pairs(blocks: Sequence[PairBlock]) -> pd.DataFrame:
    """Every kept pair with quality, performance and each diversity measure as a column."""
    frames = []
    for b in blocks:
        ci, qi = np.nonzero(b.keep)
        cols: dict[str, Any] = {
            "dataset": b.slots.dataset,
            "config_id": b.slots.config_ids[ci].tolist(),
            "question_id": b.slots.question_ids[qi],
            "quality": b.quality[ci, qi],
            "performance": b.performance[ci, qi],
            "coverage": b.coverage[ci, qi],
        }
        if b.length_chars is not None:
            cols["length_chars"] = b.length_chars[ci, qi]
        cols.update({f"diversity_{k}": v[ci, qi] for k, v in b.diversity.items()})
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def _slot_qualities(b: PairBlock, type_acc: pd.Series, source: str) -> NDArray[np.float64]:
    """``(C, n)`` per-slot accuracy: over the kept questions (slot) or the type's (model)."""
    if source == "model":
        return np.array([[float(type_acc[s.model]) for s in c.proposers] for c in b.configs])
    w = b.keep[:, :, None]
    corr = np.where(w, b.slots.correct, 0.0)
    return np.asarray(corr.sum(axis=1) / np.maximum(w.sum(axis=1), 1))


def _config_measures(
    b: PairBlock,
    *,
    ks: Sequence[float],
    center: float,
    type_acc: pd.Series,
    source: str,
    tol: float,
) -> pd.DataFrame:
    """Per-configuration measures that are not means over pairs: K-Norms, model quality, pooled."""
    slot_q = _slot_qualities(b, type_acc, source)
    # A slot's accuracy over a configuration's kept questions can dip below its sample's
    # overall accuracy when pairs are dropped: the centre covers both.
    c0 = min(center, float(slot_q.min()))
    out: dict[str, Any] = {"config_id": b.slots.config_ids.tolist()}
    if source == "model":
        # The same sum as the QD table's quality_model column, so the two agree to the bit.
        out["quality_mean"] = [100.0 * float(np.mean(list(r))) for r in slot_q]
    for k in ks:
        out[f"quality_knorm_k{k:g}"] = 100 * k_norm(slot_q, k=k)
        out[f"quality_cknorm_k{k:g}"] = 100 * centered_k_norm(slot_q, k=k, center=c0)
    if b.kernel is not None:
        out["diversity_pooled_vendi"] = vendi_score(b.kernel, q=1.0, tol=tol)
    return pd.DataFrame(out)[b.keep.any(axis=1)]


def _dataset_rows(rows: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's proposer rows, index reset; refuses a dataset without any."""
    frame = rows[rows["dataset"] == dataset].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"measure_table: dataset {dataset!r} has no proposer rows in outputs.")
    return frame


def _dataset_measures(
    rows: pd.DataFrame,
    analysis: Analysis,
    embeddings: Any,
    *,
    dataset: str,
    request: PairRequest,
    ks: Sequence[float],
    source: str,
) -> pd.DataFrame:
    """Every measure of one dataset's configurations, from all datasets' proposer ``rows``."""
    frame = _dataset_rows(rows, dataset)
    blocks = measure_blocks(
        frame,
        analysis.configs[dataset],
        embeddings,
        dataset=dataset,
        aggregator=analysis.aggregator,
        request=request,
        # The analysis already warned about these very pairs.
        warn=False,
    )
    g = _wide_pairs(blocks).groupby(["dataset", "config_id"], sort=True)
    means = g.mean(numeric_only=True)
    out = pd.concat([g.size().rename("n_questions"), means], axis=1).reset_index()
    # The same group means as the QD table (summarise_pairs), so the default row equals it.
    out["performance"] *= 100.0
    out = out.rename(columns={"quality": "quality_mean"})
    out["quality_mean"] *= 100.0
    out["coverage"] *= 100.0
    out["selection_loss"] = selection_loss(out)
    type_acc = frame.groupby("proposer")["correct"].mean()
    sample_acc = frame.groupby(["proposer", "sample_index"])["correct"].mean()
    center = float(type_acc.min() if source == "model" else sample_acc.min())
    per_config = pd.concat(
        [
            _config_measures(
                b, ks=ks, center=center, type_acc=type_acc, source=source, tol=request.tol
            )
            for b in blocks
        ],
        ignore_index=True,
    )
    if source == "model":
        out = out.drop(columns="quality_mean")
    ens = ensemble_measures(blocks).rename(columns={"n_eff": "diversity_n_eff"})
    return out.merge(per_config, on="config_id", how="left").merge(ens, on="config_id", how="left")


#: Descriptive columns of :func:`measure_table` that are not fitted as quality or diversity.
_DESCRIPTIVE = ("coverage", "selection_loss", "error_corr", "length_chars")


def _column_order(table: pd.DataFrame) -> list[str]:
    head = ["dataset", "config_id", "n_questions", "performance", "quality_mean"]
    head += [c for c in _DESCRIPTIVE if c in table.columns]
    qual = [c for c in table.columns if c.startswith("quality_") and c != "quality_mean"]
    div = [c for c in table.columns if c.startswith("diversity_") and c != "diversity_pooled_vendi"]
    tail = ["diversity_pooled_vendi"] if "diversity_pooled_vendi" in table.columns else []
    return head + qual + div + tail


def _quality_source(spec: AnalysisSpec, quality_source: str | None) -> str:
    """The slot-quality source: the one asked for, else the analysis's; refuses an unknown one."""
    source = spec.quality if quality_source is None else quality_source
    if source not in ("slot", "model"):
        raise ConfigError(f"quality_source: expected 'slot' or 'model'; got {source!r}.")
    return source


def _every_measure(
    spec: AnalysisSpec, vendi_orders: Sequence[float], *, pooled: bool
) -> PairRequest:
    """The engine request for every measure; the analysis's own Vendi order is always among them."""
    orders = tuple(dict.fromkeys([*vendi_orders, spec.vendi_q]))
    return PairRequest(
        vendi_orders=orders, tol=spec.vendi_tol, cosine=True, answers=True, pooled=pooled
    )


def measure_table(
    analysis: Analysis,
    outputs: pd.DataFrame,
    *,
    embeddings: Any = None,
    ks: Sequence[float] = (2, 3, 4),
    vendi_orders: Sequence[float] = (0.5, 1.0, 2.0, math.inf),
    pooled: bool = True,
    quality_source: str | None = None,
) -> pd.DataFrame:
    """Every quality and diversity measure of every configuration of an analysis.

    The pairs are measured by the engine with the analysis's own aggregator, Vendi tolerance
    and proposer key (from :attr:`Analysis.spec`), so ``performance``, ``quality_mean`` and
    the Vendi column of the analysis's order equal the QD table's columns.

    Parameters
    ----------
    analysis
        An :func:`~qdanalysis.analysis.pipeline.analyze` result (its spec, aggregator,
        configurations and, unless ``embeddings`` is given, its embeddings).
    outputs
        The outputs table the analysis ran on.
    embeddings
        Alternative :class:`~qdanalysis.analysis.embeddings.Embeddings` of the same texts (another
        embedding model); default: the analysis's.
    ks
        K values of the K-Norm families (K = 1 is ``quality_mean``).
    vendi_orders
        Vendi orders q of the per-question scores; the analysis's own order is always added.
    pooled
        Also compute the pooled Vendi Score per configuration (order 1, see Notes).
    quality_source
        ``"slot"``: a slot's quality is the accuracy of its own outputs over the configuration's
        questions; ``"model"``: the overall accuracy of the slot's proposer type in the dataset
        (the paper's definition). Default: the analysis's ``spec.quality``.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, configuration) with a measured pair: ``dataset, config_id,
        n_questions, performance`` (the analysis's aggregator, %), ``quality_mean``, the QD
        table's ``coverage, selection_loss, error_corr, length_chars``, ``quality_knorm_k<K>``,
        ``quality_cknorm_k<K>`` (%), ``diversity_vendi_q<q>`` (``q0.5, q1, q2, qinf``),
        ``diversity_cosine`` (NaN for one slot), ``diversity_answers``,
        ``diversity_answer_entropy``, ``diversity_n_eff`` (the QD table's ``n_eff``) and
        ``diversity_pooled_vendi``, each per question then averaged, except pooled,
        ``error_corr`` and ``diversity_n_eff`` (per configuration).

    Raises
    ------
    ConfigError
        If ``quality_source`` is unknown.
    DataError
        If a dataset of the analysis has no proposer rows in ``outputs``.

    Notes
    -----
    Pairs left out of the analysis (a missing slot output or no score) are left out of every
    measure. **Assumptions**: the centre of the Centered-1/K-Norm is the lowest slot quality
    available in the dataset (lowest sample accuracy for ``"slot"``, or lower when dropped pairs
    leave a slot's questions less accurate; lowest model accuracy for ``"model"``); the pooled
    Vendi Score of a configuration is the Vendi Score (q = 1) of its n slots under the
    question-averaged similarity K̄ = (1/Q) Σ_q K_q (pool the kernels, then take one score)
    instead of the mean of per-question scores; K̄ is PSD with a unit diagonal, so the score
    stays on [1, n]. (The Vendi Score of all n × Q outputs as one set,
    :func:`~qdanalysis.analysis.diversity.vendi_score_dual`, mixes in the spread between
    questions; it is left out of this table.)
    """
    spec = analysis.spec
    source = _quality_source(spec, quality_source)
    emb = embeddings if embeddings is not None else analysis.embeddings
    request = _every_measure(spec, vendi_orders, pooled=pooled)
    rows = add_proposer_column(proposer_rows(outputs), list(spec.proposer_key))
    tables = [
        _dataset_measures(rows, analysis, emb, dataset=ds, request=request, ks=ks, source=source)
        for ds in sorted(analysis.configs)
    ]
    out = pd.concat(tables, ignore_index=True)
    return out[_column_order(out)].sort_values(["dataset", "config_id"]).reset_index(drop=True)


def label(column: str, labels: Mapping[str, str] | None = None) -> str:
    """A readable name of a measure column (falls back to the column name)."""
    table = {**QUALITY_LABELS, **DIVERSITY_LABELS, **(labels or {})}
    return table.get(column, column)


#: Diversity measures that read no embedding (fitted once, under the first embedding) -> the
#: ``embedding`` column of their rows.
_EMBEDDING_FREE = {
    "diversity_answers": "(answers)",
    "diversity_answer_entropy": "(answers)",
    "diversity_n_eff": "(correctness)",
}
#: Covariates of :func:`sensitivity_table`'s extra rows (the default measures plus z(covariate)).
COVARIATES = ("length_chars",)


def _measured(g: pd.DataFrame, qc: str, dc: str, dataset: str, *, warn: bool) -> pd.DataFrame:
    """The configurations with a value of both measures; warns about the others."""
    df = g.rename(columns={qc: "quality", dc: "diversity"})[["quality", "diversity", "performance"]]
    bad = df.isna().any(axis=1)
    if bad.any() and warn:
        warnings.warn(
            f"dataset {dataset!r}: {int(bad.sum())} of {len(df)} configurations have no value of "
            f"{dc} (e.g. the cosine distance of a one-slot configuration is undefined) and are "
            "left out of its fits.",
            DataWarning,
            stacklevel=3,
        )
    return df[~bad]


def _fit_row(df: pd.DataFrame, reg: RegressionSpec) -> dict[str, Any] | None:
    """α, β, their difference and the R²s of one combination (None: a measure is constant);
    with a third predictor (a covariate), also its coefficient ``gamma`` and ``gamma_se``."""
    try:
        res, warns = _fit_quiet(df, reg)
    except DataError:
        return None  # a measure without variance in this dataset
    c = res.coefs.set_index("term")
    w = compare_terms(res).iloc[0]
    gamma = {
        f: c.loc[t, col]
        for t in reg.terms[2:3]
        for f, col in (("gamma", "estimate"), ("gamma_se", "std_error"))
    }
    # One predictor with an intercept: R² is the squared correlation.
    return {
        **gamma,
        "n_obs": res.stats["n_obs"],
        "alpha": c.loc["quality_z", "estimate"],
        "alpha_se": c.loc["quality_z", "std_error"],
        "beta": c.loc["diversity_z", "estimate"],
        "beta_se": c.loc["diversity_z", "std_error"],
        "diff": w["estimate"],
        "diff_p": w["p_value"],
        "r2": res.stats["r2"],
        "r2_quality_only": float(np.corrcoef(df["quality"], df["performance"])[0, 1] ** 2),
        "r2_diversity_only": float(np.corrcoef(df["diversity"], df["performance"])[0, 1] ** 2),
        "corr_quality_diversity": res.stats["corr_quality_diversity"],
        "collinear": bool(warns),
    }


def _measure_columns(
    tab: pd.DataFrame, quality: Sequence[str] | None, diversity: Sequence[str] | None, first: bool
) -> tuple[list[str], list[str]]:
    qcols = list(quality) if quality else [c for c in tab.columns if c.startswith("quality_")]
    dcols = list(diversity) if diversity else [c for c in tab.columns if c.startswith("diversity_")]
    if not first:
        dcols = [c for c in dcols if c not in _EMBEDDING_FREE]
    missing = [c for c in [*qcols, *dcols] if c not in tab.columns]
    if missing:
        raise ConfigError(
            f"sensitivity_table: expected measure columns {missing} in the table; present: "
            f"{[c for c in tab.columns if c.startswith(('quality_', 'diversity_'))]}."
        )
    return qcols, dcols


def _covariate_rows(
    g: pd.DataFrame, reg: RegressionSpec, *, qc: str, dc: str, base: dict[str, Any]
) -> list[dict[str, Any]]:
    """The default fit with each of :data:`COVARIATES` added as a third z-scored predictor."""
    out = []
    for cov in COVARIATES:
        if cov not in g.columns:
            continue
        df = g.rename(columns={qc: "quality", dc: "diversity"})
        df = df[["quality", "diversity", "performance", cov]].dropna()
        row = _fit_row(df, replace(reg, predictors=("quality", "diversity", cov)))
        if row is None:
            continue
        r_q, r_d = (float(np.corrcoef(df[cov], df[c])[0, 1]) for c in ("quality", "diversity"))
        out.append(
            {
                **base,
                **row,
                "covariate": cov,
                "beta_shift": row["beta"] - base["beta"],
                "corr_covariate_quality": r_q,
                "corr_covariate_diversity": r_d,
                # The covariate can be collinear with either measure, not only q with d.
                "collinear": row["collinear"] or max(abs(r_q), abs(r_d)) > COLLINEARITY_THRESHOLD,
                "is_default": False,
                "is_paper": False,
            }
        )
    return out


_SENSITIVITY_ORDER = (
    "dataset",
    "embedding",
    "quality_measure",
    "diversity_measure",
    "covariate",
    "n_obs",
    "alpha",
    "alpha_se",
    "beta",
    "beta_se",
    "gamma",
    "gamma_se",
    "beta_shift",
    "diff",
    "diff_p",
    "r2",
    "r2_quality_only",
    "r2_diversity_only",
    "corr_quality_diversity",
    "corr_covariate_quality",
    "corr_covariate_diversity",
    "collinear",
    "is_default",
    "is_paper",
)


def sensitivity_table(
    measures: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    spec: AnalysisSpec | None = None,
    quality: Sequence[str] | None = None,
    diversity: Sequence[str] | None = None,
) -> pd.DataFrame:
    """α, β and R² for every combination of quality and diversity measure, one row each.

    Parameters
    ----------
    measures
        A :func:`measure_table` result, or a mapping embedding label -> such a table (one per
        embedding model; measures that read no embedding are the same in each and are fitted
        once, under the first label).
    spec
        The analysis's spec (default ``AnalysisSpec()``): its ``cov_type`` and ``ddof`` shape
        every fit and its ``vendi_q`` marks the default row.
    quality, diversity
        Columns to combine (default: every ``quality_*`` and ``diversity_*`` column).

    Returns
    -------
    pandas.DataFrame
        ``dataset, embedding`` (``(answers)`` or ``(correctness)`` for measures that read no
        embedding), ``quality_measure, diversity_measure, covariate`` (empty, or the
        covariate of a covariate row), ``n_obs, alpha, alpha_se, beta, beta_se, gamma,
        gamma_se`` (the covariate's coefficient, points per SD), ``beta_shift`` (β of the
        covariate row minus β of the default row), ``diff, diff_p`` (Wald test of α = β),
        ``r2, r2_quality_only, r2_diversity_only, corr_quality_diversity,
        corr_covariate_quality, corr_covariate_diversity`` (covariate rows), ``collinear`` (the
        fit warned: |r| of q and d, or of the covariate and either, above the threshold, too
        few configurations or a rank-deficient design),
        ``is_default`` (the analysis's own measures, ``quality_mean`` and the Vendi Score of
        ``spec.vendi_q`` under the first embedding: it reproduces the analysis's fit),
        ``is_paper`` (``quality_mean`` with Vendi q = 1 under the first embedding). After each
        dataset's default row comes one covariate row per column of :data:`COVARIATES` in the
        table: ``performance ~ z(quality) + z(diversity) + z(length_chars)`` (mean characters
        of the slots' outputs). Configurations without a value of a measure (the cosine
        distance of one slot) are left out of its fits with a
        :class:`~qdanalysis.errors.DataWarning`.
    """
    spec = spec if spec is not None else AnalysisSpec()
    reg = RegressionSpec(cov_type=spec.cov_type, ddof=spec.ddof)
    tables = {"default": measures} if isinstance(measures, pd.DataFrame) else dict(measures)
    default_d = "diversity_" + vendi_name(spec.vendi_q)
    rows = []
    for e_i, (emb, tab) in enumerate(tables.items()):
        qcols, dcols = _measure_columns(tab, quality, diversity, e_i == 0)
        for ds, g in tab.groupby("dataset", sort=True):
            for qc in qcols:
                for dc in dcols:
                    df = _measured(g, qc, dc, str(ds), warn=qc == qcols[0])
                    row = _fit_row(df, reg)
                    if row is None:
                        continue
                    first_mean = e_i == 0 and qc == "quality_mean"
                    rows.append(
                        {
                            "dataset": ds,
                            "embedding": _EMBEDDING_FREE.get(dc, emb),
                            "quality_measure": qc,
                            "diversity_measure": dc,
                            "covariate": "",
                            **row,
                            "is_default": first_mean and dc == default_d,
                            "is_paper": first_mean and dc == "diversity_vendi_q1",
                        }
                    )
                    if rows[-1]["is_default"]:
                        rows += _covariate_rows(g, reg, qc=qc, dc=dc, base=rows[-1])
    return pd.DataFrame(rows).reindex(columns=list(_SENSITIVITY_ORDER))


def sensitivity_long(sensitivity: pd.DataFrame, *, z: float = 1.959964) -> pd.DataFrame:
    """Reshape :func:`sensitivity_table` for :func:`~qdanalysis.analysis.plotting.forest_figure`.

    Returns
    -------
    pandas.DataFrame
        ``dataset, variant`` (``"<quality label> × <diversity label> [<embedding>]"``),
        ``term`` (``quality_z``/``diversity_z``), ``estimate``, ``ci_low``, ``ci_high``
        (estimate ± z·SE, the plain-OLS Wald interval), ``r2``, ``is_paper``.
    """
    rows = []
    for r in sensitivity.itertuples(index=False):
        emb = (
            ""
            if r.embedding == "default" or r.embedding in _EMBEDDING_FREE.values()
            else (f" [{r.embedding}]")
        )
        cov = f" + z({r.covariate})" if isinstance(r.covariate, str) and r.covariate else ""
        name = f"{label(r.quality_measure)} × {label(r.diversity_measure)}{cov}{emb}"
        for term, est, se in (
            ("quality_z", r.alpha, r.alpha_se),
            ("diversity_z", r.beta, r.beta_se),
        ):
            rows.append(
                {
                    "dataset": r.dataset,
                    "variant": name,
                    "term": term,
                    "estimate": est,
                    "ci_low": est - z * se,
                    "ci_high": est + z * se,
                    "r2": r.r2,
                    "is_paper": r.is_paper,
                }
            )
    return pd.DataFrame(rows)
