"""The paper's regression: performance on standardised quality and diversity, by OLS.

``t = α·z(q) + β·z(d) + γ`` per dataset (arXiv 2502.00674, Eq. 1), fitted with statsmodels.
Results come back as tidy tables (one row per term) with standard errors, test statistics,
p-values and confidence intervals, plus fit statistics (R², the correlation of the two
predictors and their VIF) and the Wald test of α = β.

Neighbours: :mod:`qdanalysis.analysis.qdtable` builds the input;
:mod:`qdanalysis.analysis.plotting` and :mod:`qdanalysis.analysis.export` draw and save the
results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import ConfigError, DataError, StatisticalWarning

__all__ = [
    "COEF_COLUMNS",
    "COLLINEARITY_THRESHOLD",
    "OLSResult",
    "RegressionSpec",
    "coefficient_table",
    "compare_terms",
    "fit_by",
    "fit_ols",
    "standardize",
]

COEF_COLUMNS = ("term", "estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high")
#: |corr(quality, diversity)| above this (VIF > 5.3) triggers a StatisticalWarning.
COLLINEARITY_THRESHOLD = 0.9
COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster")


def standardize(
    df: pd.DataFrame, columns: Sequence[str], *, ddof: int = 1, suffix: str = "_z"
) -> pd.DataFrame:
    """Add ``<col>_z = (col − mean) / sd`` for each column; raw columns are kept.

    Raises
    ------
    DataError
        If a column is missing, not finite, or has zero variance (it cannot be standardised).

    Examples
    --------
    >>> standardize(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), ["x"])["x_z"].tolist()
    [-1.0, 0.0, 1.0]
    """
    out = df.copy()
    for c in columns:
        if c not in out.columns:
            raise DataError(
                f"standardize: expected column {c!r}; got {list(out.columns)}.", column=c
            )
        x = pd.to_numeric(out[c], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(x).all():
            raise DataError(
                f"standardize: expected finite numbers; {int((~np.isfinite(x)).sum())} values are "
                "NaN or infinite. Drop those configurations first.",
                column=c,
            )
        sd = x.std(ddof=ddof) if x.size > ddof else 0.0
        if not sd > 0:
            raise DataError(
                f"expected variation across configurations to standardise; all {x.size} values "
                f"equal {x[0] if x.size else float('nan'):.6g} (sd = 0). This predictor cannot "
                "be told apart from the intercept: vary it, or fit without it.",
                column=c,
            )
        out[c + suffix] = (x - x.mean()) / sd
    return out


@dataclass(frozen=True, kw_only=True)
class RegressionSpec:
    """What to regress on what, and how."""

    outcome: str = "performance"
    """Outcome column (the ensemble's accuracy in %)."""
    predictors: tuple[str, ...] = ("quality", "diversity")
    """Predictors, standardised when :attr:`standardize` is true."""
    controls: tuple[str, ...] = ()
    """Extra regressors entered raw (e.g. ``n_proposers`` when it varies)."""
    standardize: bool = True
    """z-score the predictors within each fitted group (the paper's choice)."""
    ddof: int = 1
    """Degrees of freedom of the z-scores' standard deviation."""
    cov_type: str = "nonrobust"
    """statsmodels covariance: ``nonrobust`` (plain OLS, the paper's), ``HC0``–``HC3`` or
    ``cluster``."""
    cov_kwds: Mapping[str, Any] | None = None
    """Extra covariance arguments, e.g. ``{"groups": ...}`` for ``cluster``."""
    alpha: float = 0.05
    """1 − confidence level of the intervals."""

    def __post_init__(self) -> None:
        if self.cov_type not in COV_TYPES:
            raise ConfigError(
                f"cov_type: expected one of {list(COV_TYPES)}; got {self.cov_type!r}."
            )
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha: expected a number in (0, 1); got {self.alpha!r}.")
        if not self.predictors:
            raise ConfigError("predictors: expected at least one predictor; got none.")
        object.__setattr__(self, "predictors", tuple(self.predictors))
        object.__setattr__(self, "controls", tuple(self.controls))

    @property
    def terms(self) -> tuple[str, ...]:
        """Regressor names as they appear in the fit (``quality_z`` …)."""
        suffix = "_z" if self.standardize else ""
        return tuple(p + suffix for p in self.predictors) + self.controls

    @property
    def formula(self) -> str:
        """The model in formula notation, e.g. ``performance ~ quality_z + diversity_z``."""
        return f"{self.outcome} ~ " + " + ".join(self.terms)


@dataclass(frozen=True, kw_only=True)
class OLSResult:
    """A fitted regression as tidy tables, plus the statsmodels results object."""

    spec: RegressionSpec
    coefs: pd.DataFrame
    """One row per term (``Intercept`` first): :data:`COEF_COLUMNS`."""
    stats: dict[str, Any]
    """``n_obs, r2, adj_r2, df_resid, cov_type, formula, corr_quality_diversity, vif``."""
    scaling: dict[str, tuple[float, float]]
    """Predictor -> (mean, sd) used to standardise it."""
    raw: Any = field(repr=False)
    """The ``statsmodels`` regression results."""


def fit_ols(qd_table: pd.DataFrame, spec: RegressionSpec | None = None) -> OLSResult:
    """Fit ``outcome ~ z(predictors) + controls`` by OLS (statsmodels) on one group.

    Parameters
    ----------
    qd_table
        One row per configuration (e.g. one dataset of the QD table).
    spec
        What to fit; the paper's model by default.

    Returns
    -------
    OLSResult

    Raises
    ------
    DataError
        If columns are missing or a predictor has no variance; if there are not more
        observations than parameters.

    Warns
    -----
    StatisticalWarning
        When |corr(quality, diversity)| > :data:`COLLINEARITY_THRESHOLD`, or with fewer than 10
        observations per parameter.

    Notes
    -----
    With both predictors z-scored and an intercept, α and β are the change in performance
    (percentage points) per standard deviation of quality and of diversity.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"quality": rng.normal(size=50), "diversity": rng.normal(size=50)})
    >>> df["performance"] = 2 * df["quality"] + df["diversity"] + rng.normal(0, 0.1, 50)
    >>> res = fit_ols(df)
    >>> res.coefs["term"].tolist()
    ['Intercept', 'quality_z', 'diversity_z']
    >>> bool(res.stats["r2"] > 0.99)
    True
    """
    sm = __import__("statsmodels.api", fromlist=["OLS"])
    spec = spec or RegressionSpec()
    df, y = _outcome(qd_table, spec)
    df, X, scaling = _design(df, spec)
    _check_size(*X.shape)
    corr, vif = _collinearity(df, spec.predictors)
    model = sm.OLS(y, X)
    kwds = dict(spec.cov_kwds) if spec.cov_kwds else None
    if spec.cov_type == "cluster" and not kwds:
        raise ConfigError("cov_type='cluster' needs cov_kwds={'groups': <array of cluster ids>}.")
    res = model.fit(cov_type=spec.cov_type, cov_kwds=kwds)
    coefs = _coef_table(res, list(X.columns), spec.alpha)
    stats = {
        "n_obs": int(res.nobs),
        "r2": float(res.rsquared),
        "adj_r2": float(res.rsquared_adj),
        "df_resid": float(res.df_resid),
        "cov_type": spec.cov_type,
        "formula": spec.formula,
        "corr_quality_diversity": corr,
        "vif": vif,
    }
    return OLSResult(spec=spec, coefs=coefs, stats=stats, scaling=scaling, raw=res)


def _outcome(
    qd_table: pd.DataFrame, spec: RegressionSpec
) -> tuple[pd.DataFrame, NDArray[np.float64]]:
    """The rows (index reset) and their outcome; refuses missing columns or a non-finite outcome."""
    need = [spec.outcome, *spec.predictors, *spec.controls]
    missing = [c for c in need if c not in qd_table.columns]
    if missing:
        raise DataError(
            f"fit_ols: expected columns {need}; missing {missing}. Present: "
            f"{list(qd_table.columns)}."
        )
    df = qd_table.reset_index(drop=True)
    y = pd.to_numeric(df[spec.outcome], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(y).all():
        raise DataError(
            f"fit_ols: expected a finite outcome; {int((~np.isfinite(y)).sum())} values are NaN.",
            column=spec.outcome,
        )
    return df, y


def _design(
    df: pd.DataFrame, spec: RegressionSpec
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[float, float]]]:
    """The rows with z-scored predictors, the design matrix (intercept first), their scaling."""
    scaling: dict[str, tuple[float, float]] = {}
    if spec.standardize:
        df = standardize(df, spec.predictors, ddof=spec.ddof)
        for p in spec.predictors:
            x = df[p].to_numpy(dtype=np.float64)
            scaling[p] = (float(x.mean()), float(x.std(ddof=spec.ddof)))
    X = pd.DataFrame({"Intercept": 1.0}, index=df.index)
    for t in spec.terms:
        X[t] = pd.to_numeric(df[t], errors="coerce").astype(np.float64)
    return df, X, scaling


def _check_size(n: int, k: int) -> None:
    """Refuse no more observations than parameters; warn (at fit_ols's caller) under 10 each."""
    if n <= k:
        raise DataError(
            f"fit_ols: expected more configurations than the {k} parameters; got {n}. "
            "Generate more configurations or fit fewer terms."
        )
    if n < 10 * k:
        warnings.warn(
            f"only {n} configurations for {k} parameters (< 10 per parameter): standard errors "
            "and p-values are fragile.",
            StatisticalWarning,
            stacklevel=3,
        )


def _collinearity(df: pd.DataFrame, predictors: Sequence[str]) -> tuple[float, float]:
    """Correlation and VIF of the first two predictors (NaN if fewer); warns when collinear."""
    if len(predictors) < 2:
        return math.nan, math.nan
    a = df[predictors[0]].to_numpy(dtype=np.float64)
    b = df[predictors[1]].to_numpy(dtype=np.float64)
    corr = float(np.corrcoef(a, b)[0, 1])
    vif = 1.0 / (1.0 - corr**2) if abs(corr) < 1 else math.inf
    if abs(corr) > COLLINEARITY_THRESHOLD:
        warnings.warn(
            f"{predictors[0]} and {predictors[1]} are collinear (r = {corr:.3f}, "
            f"VIF = {vif:.1f}): their coefficients cannot be told apart reliably; read them "
            "jointly and prefer the test of their difference.",
            StatisticalWarning,
            stacklevel=3,
        )
    return corr, vif


def _coef_table(res: Any, terms: list[str], alpha: float) -> pd.DataFrame:
    """One row per term: estimate, standard error, statistic, p-value and confidence interval."""
    ci = np.asarray(res.conf_int(alpha=alpha))
    return pd.DataFrame(
        {
            "term": terms,
            "estimate": np.asarray(res.params, dtype=np.float64),
            "std_error": np.asarray(res.bse, dtype=np.float64),
            "statistic": np.asarray(res.tvalues, dtype=np.float64),
            "p_value": np.asarray(res.pvalues, dtype=np.float64),
            "ci_low": ci[:, 0],
            "ci_high": ci[:, 1],
        }
    )


def fit_by(
    qd_table: pd.DataFrame, spec: RegressionSpec | None = None, *, by: str = "dataset"
) -> dict[str, OLSResult]:
    """Fit :func:`fit_ols` separately within each group of ``by`` (standardising within it)."""
    if by not in qd_table.columns:
        raise DataError(f"fit_by: expected a {by!r} column; got {list(qd_table.columns)}.")
    out = {}
    for key, g in qd_table.groupby(by, sort=True):
        try:
            out[str(key)] = fit_ols(g, spec)
        except DataError as exc:
            raise DataError(f"{by} {key!r}: {exc.message}", column=exc.column) from exc
    return out


def compare_terms(result: OLSResult, a: str = "quality_z", b: str = "diversity_z") -> pd.DataFrame:
    """Wald test of ``a = b`` (e.g. α = β) under the fit's covariance.

    Returns
    -------
    pandas.DataFrame
        One row: ``contrast`` (``"a - b"``), ``estimate`` (a − b), ``std_error``, ``statistic``
        (t, or z for robust covariances), ``p_value``, ``ci_low``, ``ci_high``.
    """
    terms = list(result.coefs["term"])
    for t in (a, b):
        if t not in terms:
            raise ConfigError(f"compare_terms: expected a term of the fit {terms}; got {t!r}.")
    r = np.zeros(len(terms))
    r[terms.index(a)] = 1.0
    r[terms.index(b)] = -1.0
    tt = result.raw.t_test(r)
    ci = np.asarray(tt.conf_int(alpha=result.spec.alpha)).ravel()
    return pd.DataFrame(
        {
            "contrast": [f"{a} - {b}"],
            "estimate": [float(np.asarray(tt.effect).ravel()[0])],
            "std_error": [float(np.asarray(tt.sd).ravel()[0])],
            "statistic": [float(np.asarray(tt.tvalue).ravel()[0])],
            "p_value": [float(np.asarray(tt.pvalue).ravel()[0])],
            "ci_low": [float(ci[0])],
            "ci_high": [float(ci[1])],
        }
    )


def coefficient_table(results: Mapping[str, OLSResult], *, by: str = "dataset") -> pd.DataFrame:
    """Stack fits into one tidy table: ``<by>, term, estimate, …, n_obs, r2, adj_r2, cov_type,
    formula, corr_quality_diversity, vif``, plus one ``quality_z - diversity_z`` row per fit
    (the Wald test of α = β) when both terms are present."""
    rows = []
    for key, res in results.items():
        c = res.coefs.copy()
        terms = set(c["term"])
        if {"quality_z", "diversity_z"} <= terms:
            w = compare_terms(res).rename(columns={"contrast": "term"})
            c = pd.concat([c, w], ignore_index=True)
        c.insert(0, by, key)
        for s in ("n_obs", "r2", "adj_r2", "cov_type", "formula", "corr_quality_diversity", "vif"):
            c[s] = res.stats[s]
        rows.append(c)
    return pd.concat(rows, ignore_index=True)
