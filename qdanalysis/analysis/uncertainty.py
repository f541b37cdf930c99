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
from numpy.typing import NDArray

from ..errors import ConfigError, DataError, StatisticalWarning
from .pipeline import Analysis, AnalysisSpec
from .regression import COLLINEARITY_THRESHOLD, RegressionSpec, compare_terms, fit_ols

__all__ = [
    "BOOT_TERMS",
    "DEFAULT_LEVEL",
    "BootstrapResult",
    "bootstrap_coefs",
    "diagnostics_table",
    "pair_matrices",
    "question_weights",
    "r2_table",
    "residual_frame",
    "uncertainty_table",
]

#: Confidence level of every interval of this module.
DEFAULT_LEVEL = 0.95

#: Quantities the bootstrap reports, in order.
BOOT_TERMS = ("quality_z", "diversity_z", "quality_z - diversity_z", "r2")


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
    """Refit ``100·t ~ z(q) + z(d)`` for each weight row: ``(B, 4)`` α, β, α − β, R²."""
    q, d, t, keep = _weighted_means(mats, W)
    nk = keep.sum(axis=1, keepdims=True)

    def z(x: NDArray[np.float64]) -> NDArray[np.float64]:
        mu = (x * keep).sum(axis=1, keepdims=True) / nk
        var = (((x - mu) ** 2) * keep).sum(axis=1, keepdims=True) / (nk - ddof)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray((x - mu) / np.sqrt(var) * keep)

    X = np.stack([keep, z(q), z(d)], axis=2)  # (B, C, 3), rows of dropped configurations zero
    y = t * keep
    XtX = np.einsum("bci,bcj->bij", X, X)
    Xty = np.einsum("bci,bc->bi", X, y)
    out = np.full((W.shape[0], 4), np.nan)
    ok = np.isfinite(XtX).all(axis=(1, 2)) & (np.abs(np.linalg.det(XtX)) > 1e-12)
    beta = np.linalg.solve(XtX[ok], Xty[ok][..., None])[..., 0]
    resid = (y[ok] - np.einsum("bci,bi->bc", X[ok], beta)) * keep[ok]
    ybar = y[ok].sum(axis=1, keepdims=True) / nk[ok]
    sst = (((y[ok] - ybar) * keep[ok]) ** 2).sum(axis=1)
    out[ok, 0] = beta[:, 1]
    out[ok, 1] = beta[:, 2]
    out[ok, 2] = beta[:, 1] - beta[:, 2]
    out[ok, 3] = 1.0 - (resid**2).sum(axis=1) / sst
    return out


@dataclass(frozen=True, kw_only=True)
class BootstrapResult:
    """Bootstrap replicates and their summary."""

    draws: pd.DataFrame
    """One row per (dataset, replicate): ``dataset, draw, quality_z, diversity_z,
    quality_z - diversity_z, r2``."""
    summary: pd.DataFrame
    """One row per (dataset, term of :data:`BOOT_TERMS`): ``dataset, term, estimate`` (full
    sample), ``boot_mean, std_error`` (SD of the replicates), ``ci_low, ci_high`` (percentile),
    ``p_value`` (two-sided, share of replicates on the other side of 0, doubled; NaN for r2),
    ``n_boot, n_valid, seed, level``."""
    parameters: dict[str, Any]
    """``n_boot, seed, ddof, level, resample``: for sidecars."""


def _summary_rows(
    ds: str, R: NDArray[np.float64], full: NDArray[np.float64], *, seed: int, level: float
) -> list[dict[str, Any]]:
    lo, hi = (1 - level) / 2, (1 + level) / 2
    rows = []
    for j, term in enumerate(BOOT_TERMS):
        v = R[:, j][np.isfinite(R[:, j])]
        p = math.nan
        if term != "r2" and v.size:
            p = min(1.0, 2 * min(float((v <= 0).mean()), float((v >= 0).mean())))
        rows.append(
            {
                "dataset": ds,
                "term": term,
                "estimate": float(full[j]),
                "boot_mean": float(v.mean()) if v.size else math.nan,
                "std_error": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                "ci_low": float(np.quantile(v, lo)) if v.size else math.nan,
                "ci_high": float(np.quantile(v, hi)) if v.size else math.nan,
                "p_value": p,
                "n_boot": R.shape[0],
                "n_valid": int(v.size),
                "seed": seed,
                "level": level,
            }
        )
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
    df = pd.DataFrame(R, columns=list(BOOT_TERMS))
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


def _fit_quiet(df: pd.DataFrame, spec: RegressionSpec) -> tuple[Any, list[str]]:
    """Fit, returning the warnings (ours and statsmodels', e.g. rank deficiency) as messages."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit_ols(df, spec)
    return res, [str(w.message) for w in rec]


def uncertainty_table(
    qd_table: pd.DataFrame,
    *,
    cov_types: Sequence[str] = ("nonrobust", "HC3"),
    bootstrap: BootstrapResult | None = None,
    ddof: int = AnalysisSpec.ddof,
    level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """α, β and α − β per dataset under several covariance estimators and the bootstrap.

    Parameters
    ----------
    qd_table
        The QD table (one row per configuration; ``dataset, quality, diversity, performance``).
    cov_types
        statsmodels covariance types; ``"nonrobust"`` is the paper's plain OLS.
    bootstrap
        Optional :func:`bootstrap_coefs` result to add as ``method = "bootstrap"`` rows.
    ddof, level
        z-score degrees of freedom and confidence level.

    Returns
    -------
    pandas.DataFrame
        ``dataset, term (quality_z, diversity_z, quality_z - diversity_z), method, estimate,
        std_error, ci_low, ci_high, p_value, n_obs, r2``. Rows for ``quality_z - diversity_z``
        are the Wald test of α = β under that covariance.
    """
    rows = []
    for ds, g in qd_table.groupby("dataset", sort=True):
        for cov in cov_types:
            spec = RegressionSpec(cov_type=cov, ddof=ddof, alpha=1 - level)
            res, _ = _fit_quiet(g, spec)
            c = res.coefs.set_index("term")
            w = compare_terms(res).iloc[0]
            for term in ("quality_z", "diversity_z"):
                r = c.loc[term]
                rows.append(
                    {
                        "dataset": ds,
                        "term": term,
                        "method": cov,
                        "estimate": r["estimate"],
                        "std_error": r["std_error"],
                        "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"],
                        "p_value": r["p_value"],
                    }
                )
            rows.append(
                {
                    "dataset": ds,
                    "term": "quality_z - diversity_z",
                    "method": cov,
                    **{k: w[k] for k in ("estimate", "std_error", "ci_low", "ci_high", "p_value")},
                }
            )
            for r in rows[-3:]:
                r["n_obs"] = res.stats["n_obs"]
                r["r2"] = res.stats["r2"]
    out = pd.DataFrame(rows)
    if bootstrap is not None:
        b = bootstrap.summary[bootstrap.summary["term"] != "r2"].copy()
        b["method"] = "bootstrap"
        b = b.merge(
            out.drop_duplicates("dataset")[["dataset", "n_obs", "r2"]], on="dataset", how="left"
        )
        out = pd.concat([out, b[out.columns]], ignore_index=True)
    order = {"quality_z": 0, "diversity_z": 1, "quality_z - diversity_z": 2}
    out["_o"] = out["term"].map(order)
    return (
        out.sort_values(["dataset", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    )


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
