"""Uncertainty and diagnostics of the quality–diversity regression.

- :func:`bootstrap_coefs` resamples questions (recomputing every configuration's q, d and t
  from the engine's pair table, re-standardising and refitting) and gives percentile intervals
  for α, β, α − β and R²; its full-sample estimate is the analysis's fit.
- :func:`uncertainty_table` sets plain OLS, HC3 and the bootstrap side by side;
  :func:`r2_table` gives R² with and without each predictor.
- :func:`diagnostics_table` (corr(q, d), VIF, a collinearity flag) and :func:`residual_frame`
  (for the residual plot).

Neighbours: :mod:`qdanalysis.analysis.pipeline` (the pair and QD tables, the spec),
:mod:`qdanalysis.analysis.regression` (the fits), :mod:`qdanalysis.analysis.sensitivity`
(robustness to the measures), :mod:`qdanalysis.analysis.plotting` (the figures).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, DataError, StatisticalWarning
from .pipeline import Analysis, AnalysisSpec
from .regression import COLLINEARITY_THRESHOLD, RegressionSpec, compare_terms, fit_ols

__all__ = [
    "BOOT_TERMS",
    "DEFAULT_LEVEL",
    "PAIR_MODEL",
    "RAW_TERMS",
    "BootstrapResult",
    "bootstrap_coefficients",
    "bootstrap_coefs",
    "bootstrap_p_value",
    "diagnostics_table",
    "fit_pair_model",
    "pair_matrices",
    "pair_model_table",
    "question_weights",
    "r2_table",
    "residual_frame",
    "uncertainty_table",
]

#: Confidence level of every interval of this module.
DEFAULT_LEVEL = 0.95

#: Quantities the bootstrap reports, in order.
BOOT_TERMS = ("quality_z", "diversity_z", "quality_z - diversity_z", "r2")
#: Raw-unit slopes the bootstrap also draws (points per quality point, per Vendi unit).
RAW_TERMS = {"quality_z": "quality_raw", "diversity_z": "diversity_raw"}


# --------------------------------------------------------------------------- bootstrap


def pair_matrices(
    pairs: pd.DataFrame, dataset: str
) -> tuple[NDArray[np.object_], NDArray[np.object_], dict[str, NDArray[np.float64]]]:
    """Pivot one dataset's pair table to (configuration × question) matrices.

    Returns
    -------
    config_ids, question_ids : numpy.ndarray
        Sorted row and column labels.
    mats : dict
        ``quality``, ``diversity``, ``performance`` (NaN where a pair is missing) and ``mask``
        (1.0 where present).
    """
    p = pairs[pairs["dataset"] == dataset]
    if p.empty:
        raise DataError(f"pair_matrices: expected pairs of dataset {dataset!r}; there are none.")
    cids = np.array(sorted(p["config_id"].unique()), dtype=object)
    qids = np.array(sorted(p["question_id"].unique()), dtype=object)
    ci = pd.Index(cids).get_indexer(p["config_id"])
    qi = pd.Index(qids).get_indexer(p["question_id"])
    mats: dict[str, NDArray[np.float64]] = {}
    for col in ("quality", "diversity", "performance"):
        m = np.full((cids.size, qids.size), np.nan)
        m[ci, qi] = p[col].to_numpy(dtype=np.float64)
        mats[col] = m
    mats["mask"] = (~np.isnan(mats["performance"])).astype(np.float64)
    return cids, qids, mats


def question_weights(
    n_questions: int, n_boot: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``(n_boot, n_questions)`` multinomial counts: how often each question is drawn.

    Examples
    --------
    >>> w = question_weights(5, 3, np.random.default_rng(0))
    >>> w.shape, w.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    p = np.full(n_questions, 1.0 / n_questions)
    return rng.multinomial(n_questions, p, size=n_boot).astype(np.float64)


def _weighted_means(
    mats: Mapping[str, NDArray[np.float64]], W: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """Per weight row, each configuration's weighted q, d, 100·t and whether it was drawn.

    Returns ``(q, d, t, keep)``, each ``(B, C)``; ``W`` of ones gives the full-sample measures.
    """
    M = mats["mask"]
    num = {k: W @ np.nan_to_num(mats[k] * M).T for k in ("quality", "diversity", "performance")}
    den = W @ M.T  # (B, C): weighted count of each configuration's questions
    keep = (den > 0).astype(np.float64)
    safe = np.where(den > 0, den, 1.0)
    return (
        num["quality"] / safe,
        num["diversity"] / safe,
        100.0 * num["performance"] / safe,
        keep,
    )


def _weighted_fits(
    mats: Mapping[str, NDArray[np.float64]], W: NDArray[np.float64], *, ddof: int
) -> NDArray[np.float64]:
    """Refit ``100·t ~ z(q) + z(d)`` for each weight row: ``(B, 6)`` α, β, α − β, R² and the
    raw-unit slopes α / SD(100·q) (points per quality point), β / SD(d) (per Vendi unit)."""
    q, d, t, keep = _weighted_means(mats, W)
    nk = keep.sum(axis=1, keepdims=True)

    def sd(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        mu = (x * keep).sum(axis=1, keepdims=True) / nk
        var = (((x - mu) ** 2) * keep).sum(axis=1, keepdims=True) / (nk - ddof)
        return mu, np.sqrt(var)

    def z(x: NDArray[np.float64], mu: NDArray[np.float64], s: NDArray[np.float64]) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray((x - mu) / s * keep)

    (mq, sq), (md, sdd) = sd(q), sd(d)
    X = np.stack([keep, z(q, mq, sq), z(d, md, sdd)], axis=2)  # (B, C, 3); dropped rows zero
    y = t * keep
    XtX = np.einsum("bci,bcj->bij", X, X)
    Xty = np.einsum("bci,bc->bi", X, y)
    out = np.full((W.shape[0], 6), np.nan)
    ok = np.isfinite(XtX).all(axis=(1, 2)) & (np.abs(np.linalg.det(XtX)) > 1e-12)
    beta = np.linalg.solve(XtX[ok], Xty[ok][..., None])[..., 0]
    resid = (y[ok] - np.einsum("bci,bi->bc", X[ok], beta)) * keep[ok]
    ybar = y[ok].sum(axis=1, keepdims=True) / nk[ok]
    sst = (((y[ok] - ybar) * keep[ok]) ** 2).sum(axis=1)
    out[ok, 0] = beta[:, 1]
    out[ok, 1] = beta[:, 2]
    out[ok, 2] = beta[:, 1] - beta[:, 2]
    out[ok, 3] = 1.0 - (resid**2).sum(axis=1) / sst
    out[ok, 4] = beta[:, 1] / (100.0 * sq[ok, 0])
    out[ok, 5] = beta[:, 2] / sdd[ok, 0]
    return out


@dataclass(frozen=True, kw_only=True)
class BootstrapResult:
    """Bootstrap replicates and their summary."""

    draws: pd.DataFrame
    """One row per (dataset, replicate): ``dataset, draw, quality_z, diversity_z,
    quality_z - diversity_z, r2, quality_raw, diversity_raw``."""
    summary: pd.DataFrame
    """One row per (dataset, term of :data:`BOOT_TERMS`): ``dataset, term, estimate`` (full
    sample), ``boot_mean, std_error`` (SD of the replicates), ``ci_low, ci_high`` (percentile),
    ``p_value`` (two-sided: the share of replicates on the other side of 0, doubled, and never
    below its Monte-Carlo floor 1/n_valid; NaN for r2), ``p_floor`` (True where the share was
    below 1/n_valid, so p < p_value: no replicate crossed 0), ``n_boot, n_valid, seed, level``,
    and for α and β their raw-unit ``estimate_raw, std_error_raw, ci_low_raw, ci_high_raw``
    (percentiles of the replicates' raw slopes; NaN on the other rows)."""
    parameters: dict[str, Any]
    """``n_boot, seed, ddof, level, resample``: for sidecars."""


def bootstrap_p_value(values: ArrayLike) -> tuple[float, bool]:
    """Two-sided bootstrap p-value of "the quantity is 0", with its Monte-Carlo floor.

    p = 2·min(share ≤ 0, share ≥ 0) of the finite replicates, capped at 1. B replicates cannot
    resolve a p below 1/B: when fewer replicates than that crossed 0, the p-value is reported as
    1/B with ``floor=True`` (read: p < 1/B), never as 0.

    Returns
    -------
    p_value : float
        NaN without finite replicates.
    floor : bool
        True when ``p_value`` is the floor 1/B (an upper bound).

    Examples
    --------
    >>> bootstrap_p_value([1.0, 2.0, 3.0, 4.0])
    (0.25, True)
    >>> bootstrap_p_value([-1.0, 1.0, 2.0, 3.0])
    (0.5, False)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return math.nan, False
    p = min(1.0, 2 * min(float((v <= 0).mean()), float((v >= 0).mean())))
    floor = 1.0 / v.size
    return (floor, True) if p < floor else (p, False)


def _interval(v: NDArray[np.float64], level: float) -> dict[str, float]:
    """SD and percentile interval of the finite replicates ``v``."""
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return {
        "std_error": float(v.std(ddof=1)) if v.size > 1 else math.nan,
        "ci_low": float(np.quantile(v, lo)) if v.size else math.nan,
        "ci_high": float(np.quantile(v, hi)) if v.size else math.nan,
    }


def _summary_rows(
    ds: str, R: NDArray[np.float64], full: NDArray[np.float64], *, seed: int, level: float
) -> list[dict[str, Any]]:
    rows = []
    raw_col = {t: len(BOOT_TERMS) + i for i, t in enumerate(RAW_TERMS)}
    for j, term in enumerate(BOOT_TERMS):
        v = R[:, j][np.isfinite(R[:, j])]
        p, floor = bootstrap_p_value(v) if term != "r2" else (math.nan, False)
        row = {
            "dataset": ds,
            "term": term,
            "estimate": float(full[j]),
            "boot_mean": float(v.mean()) if v.size else math.nan,
            **_interval(v, level),
            "p_value": p,
            "p_floor": floor,
            "n_boot": R.shape[0],
            "n_valid": int(v.size),
            "seed": seed,
            "level": level,
        }
        k = raw_col.get(term)
        vr = R[:, k][np.isfinite(R[:, k])] if k is not None else np.empty(0)
        raw = _interval(vr, level) if k is not None else dict.fromkeys(_interval(vr, level))
        row["estimate_raw"] = float(full[k]) if k is not None else math.nan
        row.update({f"{key}_raw": (math.nan if x is None else x) for key, x in raw.items()})
        rows.append(row)
    return rows


def _fit_pairs(data: Analysis | pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The pair table the analysis's fit stands on, and its ``ddof``.

    With ``quality="model"`` every pair carries its configuration's model quality (constant over
    questions), so the full-sample replicate is the analysis's fit.
    """
    if isinstance(data, pd.DataFrame):
        return data, AnalysisSpec.ddof
    pairs = data.pairs
    if data.spec.quality == "model":
        qm = data.qd_table.set_index(["dataset", "config_id"])["quality_model"] / 100.0
        key = pd.MultiIndex.from_frame(pairs[["dataset", "config_id"]])
        pairs = pairs.assign(quality=qm.reindex(key).to_numpy())
    return pairs, data.spec.ddof


def _check_boot(n_boot: Any, level: Any) -> None:
    """Refuse fewer than two replicates or a confidence level outside (0, 1)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise ConfigError(f"n_boot: expected an int >= 2; got {n_boot!r}.")
    if not 0 < level < 1:
        raise ConfigError(f"level: expected a number in (0, 1); got {level!r}.")


def _bootstrap_fits(
    mats: Mapping[str, NDArray[np.float64]],
    seed: np.random.SeedSequence,
    n_boot: int,
    chunk_size: int,
    *,
    ddof: int,
    bar: Any,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The full-sample α, β, α − β, R² and ``(n_boot, 4)`` replicates, ``chunk_size`` at a time."""
    n_questions = mats["mask"].shape[1]
    full = _weighted_fits(mats, np.ones((1, n_questions)), ddof=ddof)[0]
    rng = np.random.default_rng(seed)
    reps = []
    for start in range(0, n_boot, chunk_size):
        b = min(chunk_size, n_boot - start)
        reps.append(_weighted_fits(mats, question_weights(n_questions, b, rng), ddof=ddof))
        bar.update(b)
    return full, np.concatenate(reps, axis=0)


def _draw_frame(ds: str, R: NDArray[np.float64]) -> pd.DataFrame:
    """One dataset's replicates as rows ``dataset, draw`` and the :data:`BOOT_TERMS`."""
    df = pd.DataFrame(R, columns=[*BOOT_TERMS, *RAW_TERMS.values()])
    df.insert(0, "draw", np.arange(R.shape[0]))
    df.insert(0, "dataset", ds)
    return df


def bootstrap_coefs(
    data: Analysis | pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    datasets: Sequence[str] | None = None,
    chunk_size: int = 250,
    progress: bool = True,
) -> BootstrapResult:
    """Bootstrap over questions: percentile CIs for α, β, α − β and R² per dataset.

    Parameters
    ----------
    data
        An :func:`~qdanalysis.analysis.pipeline.analyze` result (its pair table, quality source
        and ``ddof``), or a bare pair table (``dataset, config_id, question_id, quality,
        diversity, performance``, quality and performance in [0, 1]; the
        :class:`~qdanalysis.analysis.pipeline.AnalysisSpec` default ``ddof``).
    n_boot
        Replicates per dataset.
    seed
        Seed; dataset i uses the i-th child of ``numpy.random.SeedSequence(seed)`` (datasets
        sorted), so adding a dataset does not change another's draws.
    level
        Confidence level of the percentile intervals.
    datasets
        Datasets to bootstrap (default: all, sorted).
    chunk_size
        Replicates computed per vectorised step (memory: chunk × configurations × questions).
    progress
        Progress bar on stderr.

    Returns
    -------
    BootstrapResult

    Raises
    ------
    ConfigError
        If ``n_boot`` < 2 or ``level`` is outside (0, 1).

    Notes
    -----
    A replicate draws Q questions with replacement (multinomial counts w_j); each configuration's
    measures become weighted means over its questions, q_c = Σ_j w_j q_cj / Σ_j w_j (the same for
    d and t); q and d are re-standardised over configurations and ``t = α z(q) + β z(d) + γ`` is
    refitted by least squares. Configurations are kept fixed (the paper's population of
    configurations); the questions are the sample. A configuration none of whose questions is
    drawn is left out of that replicate. Nothing is re-embedded. Percentile intervals: the
    (1 − level)/2 and (1 + level)/2 quantiles of the replicates.
    """
    from tqdm.auto import tqdm

    _check_boot(n_boot, level)
    pairs, ddof = _fit_pairs(data)
    names = sorted(pairs["dataset"].unique()) if datasets is None else list(datasets)
    children = np.random.SeedSequence(seed).spawn(len(names))
    draw_frames, rows = [], []
    bar = tqdm(total=n_boot * len(names), desc="bootstrap", disable=not progress, leave=False)
    try:
        for ds, child in zip(names, children, strict=True):
            mats = pair_matrices(pairs, ds)[2]
            full, R = _bootstrap_fits(mats, child, n_boot, chunk_size, ddof=ddof, bar=bar)
            draw_frames.append(_draw_frame(ds, R))
            rows += _summary_rows(ds, R, full, seed=seed, level=level)
    finally:
        bar.close()
    return BootstrapResult(
        draws=pd.concat(draw_frames, ignore_index=True),
        summary=pd.DataFrame(rows),
        parameters={
            "n_boot": n_boot,
            "seed": seed,
            "ddof": ddof,
            "level": level,
            "resample": "questions (configurations fixed), percentile intervals",
        },
    )


# --------------------------------------------------------------------------- tables


def bootstrap_coefficients(coefs: pd.DataFrame, bootstrap: BootstrapResult) -> pd.DataFrame:
    """The coefficient table with the bootstrap's inference in place of the fit's.

    Parameters
    ----------
    coefs
        :func:`~qdanalysis.analysis.regression.coefficient_table` output of the analysis whose
        pair table was bootstrapped.
    bootstrap
        :func:`bootstrap_coefs` result.

    Returns
    -------
    pandas.DataFrame
        The same rows and columns plus ``p_floor``; for α, β and α − β: ``std_error`` (SD of the
        replicates), ``ci_low, ci_high`` (percentile), ``p_value`` (Monte-Carlo, floored at
        1/B), raw-unit interval columns from the replicates' raw slopes, ``statistic`` and
        ``df_inference`` NaN, ``cov_type`` ``"bootstrap"``. The bootstrap does not draw the
        intercept: its inference columns are NaN. Estimates stay the full-sample OLS.
    """
    out = coefs.copy()
    out["p_floor"] = False
    summ = bootstrap.summary.set_index(["dataset", "term"])
    inference = ["std_error", "statistic", "p_value", "ci_low", "ci_high"]
    raw = ["std_error_raw", "ci_low_raw", "ci_high_raw"]
    for i, r in out.iterrows():
        key = (r["dataset"], r["term"])
        out.loc[i, inference + raw + ["df_inference"]] = math.nan
        if key in summ.index:
            b = summ.loc[key]
            for col in ("std_error", "p_value", "ci_low", "ci_high", "p_floor", *raw):
                out.loc[i, col] = b[col]
    out["cov_type"] = "bootstrap"
    return out


def _fit_quiet(
    df: pd.DataFrame, spec: RegressionSpec, *, pairs: pd.DataFrame | None = None
) -> tuple[Any, list[str]]:
    """Fit, returning the warnings (ours and statsmodels', e.g. rank deficiency) as messages."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit_ols(df, spec, pairs=pairs)
    return res, [str(w.message) for w in rec]


_UNC_COLUMNS = ("estimate", "std_error", "ci_low", "ci_high", "p_value")
_TERM_ORDER = {"quality_z": 0, "diversity_z": 1, "quality_z - diversity_z": 2}


def _cov_rows(ds: Any, res: Any, cov: str) -> list[dict[str, Any]]:
    """α, β and the Wald test of α = β of one fit, as :func:`uncertainty_table` rows."""
    c = res.coefs.set_index("term")
    w = compare_terms(res).iloc[0]
    rows = [{"term": t, **{k: c.loc[t, k] for k in _UNC_COLUMNS}} for t in RAW_TERMS]
    rows.append({"term": "quality_z - diversity_z", **{k: w[k] for k in _UNC_COLUMNS}})
    extra = {
        "dataset": ds,
        "method": cov,
        "df": res.stats["df_inference"],
        "p_floor": False,
        "n_obs": res.stats["n_obs"],
        "r2": res.stats["r2"],
    }
    return [{**extra, **r} for r in rows]


def uncertainty_table(
    qd_table: pd.DataFrame,
    *,
    cov_types: Sequence[str] = ("nonrobust", "HC3"),
    bootstrap: BootstrapResult | None = None,
    ddof: int = AnalysisSpec.ddof,
    level: float = DEFAULT_LEVEL,
    pairs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """α, β and α − β per dataset under several covariance estimators and the bootstrap.

    Parameters
    ----------
    qd_table
        The QD table (one row per configuration; ``dataset, quality, diversity, performance``).
    cov_types
        statsmodels covariance types; ``"nonrobust"`` is the paper's plain OLS;
        ``"question_cluster"`` (clustered on questions) needs ``pairs``.
    bootstrap
        Optional :func:`bootstrap_coefs` result to add as ``method = "bootstrap"`` rows.
    ddof, level
        z-score degrees of freedom and confidence level.
    pairs
        The pair table (for ``question_cluster``); with it, ``question_cluster`` rows are
        added when ``cov_types`` lacks them.

    Returns
    -------
    pandas.DataFrame
        ``dataset, term (quality_z, diversity_z, quality_z - diversity_z), method, estimate,
        std_error, ci_low, ci_high, p_value, df`` (degrees of freedom of the t-based p-value
        and interval; NaN for the bootstrap), ``p_floor`` (bootstrap p at its floor 1/B: read
        p < p_value), ``n_obs, r2``. Rows for ``quality_z - diversity_z`` are the Wald test of
        α = β under that covariance. Every analytic p-value follows
        :data:`~qdanalysis.analysis.regression.P_VALUE_CONVENTION`.
    """
    covs = list(cov_types)
    if pairs is not None and "question_cluster" not in covs:
        covs.append("question_cluster")
    rows = []
    for ds, g in qd_table.groupby("dataset", sort=True):
        p = None if pairs is None else pairs[pairs["dataset"] == ds]
        for cov in covs:
            spec = RegressionSpec(cov_type=cov, ddof=ddof, alpha=1 - level)
            res, _ = _fit_quiet(g, spec, pairs=p)
            rows += _cov_rows(ds, res, cov)
    out = pd.DataFrame(rows)
    if bootstrap is not None:
        b = bootstrap.summary[bootstrap.summary["term"] != "r2"].copy()
        b["method"] = "bootstrap"
        b["df"] = math.nan
        b = b.merge(
            out.drop_duplicates("dataset")[["dataset", "n_obs", "r2"]], on="dataset", how="left"
        )
        out = pd.concat([out, b[out.columns]], ignore_index=True)
    cols = ["dataset", "term", "method", *_UNC_COLUMNS, "df", "p_floor", "n_obs", "r2"]
    out = out[cols].assign(_o=out["term"].map(_TERM_ORDER))
    return (
        out.sort_values(["dataset", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    )


#: What :func:`pair_model_table` fits, for tables and sidecars.
PAIR_MODEL = (
    "100 x performance of (configuration, question) ~ z(quality) + z(diversity) of the pair + "
    "question fixed effects, OLS; question-clustered CR1 errors, t with G - 1 df"
)


def fit_pair_model(
    pairs: pd.DataFrame, *, ddof: int = AnalysisSpec.ddof, level: float = DEFAULT_LEVEL
) -> pd.DataFrame:
    """The pair-level model of one dataset: each pair's score on its own quality and diversity,
    with question fixed effects and question-clustered errors.

    Parameters
    ----------
    pairs
        One dataset's pair table (``question_id, quality, diversity, performance``, measures in
        [0, 1]); pairs with a missing measure are left out.
    ddof, level
        z-score degrees of freedom and confidence level.

    Returns
    -------
    pandas.DataFrame
        Rows ``quality_z, diversity_z, quality_z - diversity_z``; columns ``term, estimate,
        std_error, statistic, p_value, ci_low, ci_high, df`` (G − 1), ``estimate_raw,
        ci_low_raw, ci_high_raw`` (points per quality point, per Vendi unit; NaN for the
        difference), ``n_pairs, n_questions, n_configs``.

    Notes
    -----
    y_cj = 100·t_cj = α z(q_cj) + β z(d_cj) + μ_j + e_cj, z-scores over the pairs. The question
    effects μ_j absorb question difficulty, so α and β come from differences between
    configurations on the same question. It is fitted by the within transformation (y, z(q),
    z(d) demeaned by question; the same slopes and residuals as with G dummies) with
    statsmodels' ``cov_type="cluster"`` on questions; the covariance is then rescaled by
    (N − 2)/(N − 2 − G), so its CR1 factor G/(G−1)·(N−1)/(N−k) counts the G question effects
    in k, as the dummy-variable fit does. Scores within a question are averaged over
    configurations that share proposer outputs, so errors are clustered on questions.
    """
    from scipy import stats as st

    sm = __import__("statsmodels.api", fromlist=["OLS"])
    p = pairs.dropna(subset=["quality", "diversity", "performance"])
    codes, uniq = pd.factorize(p["question_id"])
    n, g = len(p), len(uniq)
    if g < 2 or n <= g + 2:
        raise DataError(
            f"fit_pair_model: expected at least 2 questions and more pairs than parameters; "
            f"got {n} pairs over {g} questions."
        )
    q, d = (p[c].to_numpy(dtype=np.float64) for c in ("quality", "diversity"))
    sq, sd = q.std(ddof=ddof), d.std(ddof=ddof)
    cols = {"y": 100.0 * p["performance"].to_numpy(dtype=np.float64)}
    cols.update(quality_z=(q - q.mean()) / sq, diversity_z=(d - d.mean()) / sd)
    frame = pd.DataFrame(cols)
    within = frame - frame.groupby(codes).transform("mean")
    X = within[["quality_z", "diversity_z"]].to_numpy()
    res = sm.OLS(within["y"].to_numpy(), X).fit(cov_type="cluster", cov_kwds={"groups": codes})
    cov = np.asarray(res.cov_params()) * (n - 2) / (n - 2 - g)
    L = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    est, se = L @ np.asarray(res.params), np.sqrt(np.diag(L @ cov @ L.T))
    crit = float(st.t.ppf(0.5 + level / 2, g - 1))
    scale = np.array([100.0 * sq, sd, np.nan])  # per quality point, per Vendi unit
    return pd.DataFrame(
        {
            "term": list(_TERM_ORDER),
            "estimate": est,
            "std_error": se,
            "statistic": est / se,
            "p_value": 2 * st.t.sf(np.abs(est / se), g - 1),
            "ci_low": est - crit * se,
            "ci_high": est + crit * se,
            "df": float(g - 1),
            "estimate_raw": est / scale,
            "ci_low_raw": (est - crit * se) / scale,
            "ci_high_raw": (est + crit * se) / scale,
            "n_pairs": n,
            "n_questions": g,
            "n_configs": p["config_id"].nunique() if "config_id" in p.columns else math.nan,
        }
    )


def pair_model_table(
    data: Analysis | pd.DataFrame, *, level: float = DEFAULT_LEVEL
) -> pd.DataFrame:
    """:func:`fit_pair_model` per dataset, beside the configuration-level OLS.

    Parameters
    ----------
    data
        An :func:`~qdanalysis.analysis.pipeline.analyze` result (its pair table, with the
        configuration's model quality on every pair when ``quality="model"``, and ``ddof``), or
        a bare pair table.
    level
        Confidence level.

    Returns
    -------
    pandas.DataFrame
        ``dataset`` then :func:`fit_pair_model`'s columns, and ``model`` (:data:`PAIR_MODEL`).
    """
    pairs, ddof = _fit_pairs(data)
    out = []
    for ds, g in pairs.groupby("dataset", sort=True):
        t = fit_pair_model(g, ddof=ddof, level=level)
        t.insert(0, "dataset", ds)
        out.append(t.assign(model=PAIR_MODEL))
    return pd.concat(out, ignore_index=True)


def r2_table(qd_table: pd.DataFrame, *, ddof: int = AnalysisSpec.ddof) -> pd.DataFrame:
    """R² of the full model and with each predictor dropped, per dataset.

    Returns
    -------
    pandas.DataFrame
        ``dataset, n_obs, r2_full, r2_quality_only, r2_diversity_only, unique_quality``
        (r2_full − r2_diversity_only: what quality adds), ``unique_diversity``
        (r2_full − r2_quality_only), ``shared`` (r2_full minus both unique parts).
    """
    rows = []
    for ds, g in qd_table.groupby("dataset", sort=True):
        full, _ = _fit_quiet(g, RegressionSpec(ddof=ddof))
        qo, _ = _fit_quiet(g, RegressionSpec(predictors=("quality",), ddof=ddof))
        do, _ = _fit_quiet(g, RegressionSpec(predictors=("diversity",), ddof=ddof))
        r2f, r2q, r2d = full.stats["r2"], qo.stats["r2"], do.stats["r2"]
        rows.append(
            {
                "dataset": ds,
                "n_obs": full.stats["n_obs"],
                "r2_full": r2f,
                "r2_quality_only": r2q,
                "r2_diversity_only": r2d,
                "unique_quality": r2f - r2d,
                "unique_diversity": r2f - r2q,
                "shared": r2f - (r2f - r2d) - (r2f - r2q),
            }
        )
    return pd.DataFrame(rows)


def diagnostics_table(
    qd_table: pd.DataFrame, *, threshold: float = COLLINEARITY_THRESHOLD, warn: bool = True
) -> pd.DataFrame:
    """Collinearity diagnostics of quality and diversity per dataset.

    Parameters
    ----------
    qd_table
        The QD table.
    threshold
        |corr(q, d)| above which α and β are flagged as not separable.
    warn
        Issue a :class:`~qdanalysis.errors.StatisticalWarning` for each flagged dataset.

    Returns
    -------
    pandas.DataFrame
        ``dataset, n_obs, corr_quality_diversity, vif`` (1 / (1 − r²)), ``se_inflation``
        (√VIF: how much wider the SEs of α and β are than with uncorrelated predictors),
        ``collinear`` (bool).

    Notes
    -----
    With two standardised predictors, VIF = 1 / (1 − r²) for both; |r| = 0.9 gives VIF 5.3.
    """
    rows = []
    for ds, g in qd_table.groupby("dataset", sort=True):
        r = float(np.corrcoef(g["quality"], g["diversity"])[0, 1])
        vif = 1 / (1 - r * r) if abs(r) < 1 else math.inf
        flag = abs(r) > threshold
        if flag and warn:
            warnings.warn(
                f"dataset {ds!r}: quality and diversity are collinear (r = {r:.3f}, VIF = "
                f"{vif:.1f}); α and β cannot be told apart reliably. Read them jointly and "
                "rely on the test of α − β and its bootstrap interval.",
                StatisticalWarning,
                stacklevel=2,
            )
        rows.append(
            {
                "dataset": ds,
                "n_obs": len(g),
                "corr_quality_diversity": r,
                "vif": vif,
                "se_inflation": math.sqrt(vif),
                "collinear": flag,
            }
        )
    return pd.DataFrame(rows)


def residual_frame(fits: Mapping[str, Any]) -> pd.DataFrame:
    """Fitted values and residuals of each fit (for the residual plot).

    Returns
    -------
    pandas.DataFrame
        ``dataset, fitted, residual, studentized`` (internally studentized residuals).
    """
    rows = []
    for ds, res in fits.items():
        raw = res.raw
        infl = raw.get_influence()
        rows.append(
            pd.DataFrame(
                {
                    "dataset": ds,
                    "fitted": np.asarray(raw.fittedvalues, dtype=np.float64),
                    "residual": np.asarray(raw.resid, dtype=np.float64),
                    "studentized": np.asarray(infl.resid_studentized_internal, dtype=np.float64),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
