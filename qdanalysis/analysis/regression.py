"""The paper's regression: performance on standardised quality and diversity, by OLS.

``t = α·z(q) + β·z(d) + γ`` per dataset (arXiv 2502.00674, Eq. 1), fitted with statsmodels.
Results come back as tidy tables (one row per term) with standard errors, test statistics,
p-values and confidence intervals, plus fit statistics (R², the correlation of the two
predictors and their VIF) and the Wald test of α = β.

Inference convention (one for every table): p-values are two-sided and, with the confidence
intervals, Student-t based, with ``df_resid`` = n − k degrees of freedom for plain OLS and the
heteroskedasticity-robust (HC) covariances and G − 1 for question-clustered covariances (G
questions). Bootstrap p-values (:mod:`qdanalysis.analysis.uncertainty`) are Monte-Carlo shares,
floored at 1/B. Every coefficient also comes in raw units (points of performance per quality
point, per Vendi unit; the ``*_raw`` columns): standardised coefficients depend on which
configurations were sampled (their spread sets the SD), raw ones do not.

Question-clustered errors (``cov_type="question_cluster"``, ``fit --ci cluster``):
configurations share questions, so residuals correlate through questions.
y_c = (1/n_c) Σ_j 100·t_cj, so the residual splits into pair residuals e_cj = 100·t_cj − x_c'b
and the score into per-question sums X'e = Σ_j s_j, s_j = Σ_c x_c e_cj / n_c. Covariance:
(X'X)⁻¹ (Σ_j s_j s_j') (X'X)⁻¹ · G/(G−1)·(N−1)/(N−k) (G questions, N pairs, statsmodels'
CR1), computed as the pair-level WLS of 100·t_cj on x_c with weights 1/n_c (the same
estimates as the configuration-level OLS) and ``cov_type="cluster"`` on questions; t with
G − 1 df. It holds each configuration's measured q and d fixed; the question bootstrap also
propagates their sampling noise.

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
    "CI_METHODS",
    "COEF_COLUMNS",
    "COLLINEARITY_THRESHOLD",
    "DEFAULT_CI",
    "P_VALUE_CONVENTION",
    "OLSResult",
    "RegressionSpec",
    "ci_cov_type",
    "coefficient_table",
    "compare_terms",
    "fit_by",
    "fit_ols",
    "format_p",
    "standardize",
]

COEF_COLUMNS = ("term", "estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high")
#: |corr(quality, diversity)| above this (VIF > 5.3) triggers a StatisticalWarning.
COLLINEARITY_THRESHOLD = 0.9
COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster", "question_cluster")
#: Interval methods of the headline (``fit --ci``) -> a description for tables, figures and
#: sidecars. ``ols`` is the fit's ``cov_type`` (plain OLS by default, the paper's).
CI_METHODS = {
    "ols": "OLS",
    "hc3": "HC3 (heteroskedasticity-robust)",
    "cluster": "question-clustered (CR1)",
    "bootstrap": "bootstrap over questions (percentile)",
}
#: The one default of the headline interval method.
DEFAULT_CI = "ols"
#: What every p-value column means (written into sidecars and table captions).
P_VALUE_CONVENTION = (
    "two-sided; Student t with df_resid = n - k (OLS, HC3) or G - 1 (question-clustered, "
    "G questions); bootstrap: Monte-Carlo share of replicates, floored at 1/B (p_floor)"
)
#: Raw unit of each standardised predictor's coefficient.
RAW_UNITS = {
    "quality": "points per quality point",
    "quality_model": "points per quality point",
    "diversity": "points per Vendi unit",
}


def ci_cov_type(ci: str, cov_type: str = "nonrobust") -> str:
    """The covariance of the fit behind a headline interval method.

    ``ols`` keeps ``cov_type``; ``hc3`` is ``HC3``; ``cluster`` is ``question_cluster``;
    ``bootstrap`` fits plain OLS (its intervals come from the replicates).

    Raises
    ------
    ConfigError
        If ``ci`` is unknown, or another method than ``ols`` meets a ``cov_type`` other than
        ``nonrobust`` (the two would disagree on the intervals).

    Examples
    --------
    >>> ci_cov_type("cluster")
    'question_cluster'
    """
    if ci not in CI_METHODS:
        raise ConfigError(f"ci: expected one of {list(CI_METHODS)}; got {ci!r}.")
    if ci == "ols":
        return cov_type
    if cov_type != "nonrobust":
        raise ConfigError(
            f"ci: expected 'ols' with cov_type={cov_type!r} (cov_type only shapes the 'ols' "
            f"intervals); got {ci!r}. Keep cov_type='nonrobust' or use ci='ols'."
        )
    return {"hc3": "HC3", "cluster": "question_cluster", "bootstrap": "nonrobust"}[ci]


def format_p(p: float, *, floor: bool = False, digits: int = 3) -> str:
    """A p-value for print: ``digits`` significant digits, ``"< 0.001"`` below 0.001, and
    ``"< 1/B"`` for a bootstrap p-value at its Monte-Carlo floor.

    Examples
    --------
    >>> format_p(0.03812), format_p(2e-9), format_p(0.005, floor=True), format_p(float("nan"))
    ('0.0381', '< 0.001', '< 0.005', 'nan')
    """
    if not math.isfinite(p):
        return "nan"
    if floor:
        return f"< {p:.{digits}g}"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.{digits}g}"


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
    """statsmodels covariance: ``nonrobust`` (plain OLS, the paper's), ``HC0``–``HC3``,
    ``cluster`` (one cluster id per configuration in ``cov_kwds["groups"]``) or
    ``question_cluster`` (clustered on the questions the configurations share; needs the pair
    table, see :func:`fit_ols`)."""
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
    """The ``statsmodels`` regression results (configuration level: fitted values, residuals)."""
    inference: Any = field(default=None, repr=False)
    """The results whose covariance the tables report when it is not :attr:`raw`'s: for
    ``question_cluster``, the pair-level WLS of :func:`fit_ols`'s Notes."""

    @property
    def cov_results(self) -> Any:
        """The statsmodels results behind standard errors, tests and intervals."""
        return self.raw if self.inference is None else self.inference


def fit_ols(
    qd_table: pd.DataFrame,
    spec: RegressionSpec | None = None,
    *,
    pairs: pd.DataFrame | None = None,
) -> OLSResult:
    """Fit ``outcome ~ z(predictors) + controls`` by OLS (statsmodels) on one group.

    Parameters
    ----------
    qd_table
        One row per configuration (e.g. one dataset of the QD table).
    spec
        What to fit; the paper's model by default.
    pairs
        The pair table (``config_id, question_id, performance`` in [0, 1]; other datasets'
        rows are ignored when both tables have a ``dataset`` column): needed, and only used,
        for ``cov_type="question_cluster"``.

    Returns
    -------
    OLSResult
        Coefficients with t-based p-values and intervals (see the module's convention) and
        their raw-unit versions (``estimate_raw, std_error_raw, ci_low_raw, ci_high_raw,
        unit_raw``).

    Raises
    ------
    DataError
        If columns are missing or a predictor has no variance; if there are not more
        observations than parameters; if the pair table does not average to the outcome.
    ConfigError
        If ``question_cluster`` comes without ``pairs``, or ``cluster`` without groups.

    Warns
    -----
    StatisticalWarning
        When |corr(quality, diversity)| > :data:`COLLINEARITY_THRESHOLD`, or with fewer than 10
        observations per parameter.

    Notes
    -----
    With both predictors z-scored and an intercept, α and β are the change in performance
    (percentage points) per standard deviation of quality and of diversity.

    ``question_cluster``: see the module docstring.

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
    res, inference = _fit(sm, X, y, df, spec, pairs)
    inf = res if inference is None else inference
    coefs = _coef_table(inf, list(X.columns), spec.alpha)
    coefs = _with_raw_units(coefs, inf, scaling, spec)
    stats = {
        **_fit_stats(res, inference),
        "cov_type": spec.cov_type,
        "formula": spec.formula,
        "corr_quality_diversity": corr,
        "vif": vif,
    }
    return OLSResult(
        spec=spec, coefs=coefs, stats=stats, scaling=scaling, raw=res, inference=inference
    )


def _fit_stats(res: Any, inference: Any) -> dict[str, Any]:
    """Size, R² and degrees of freedom of a fit (``df_inference``: of its t-based p-values)."""
    inf = res if inference is None else inference
    return {
        "n_obs": int(res.nobs),
        "r2": float(res.rsquared),
        "adj_r2": float(res.rsquared_adj),
        "df_resid": float(res.df_resid),
        "df_inference": float(getattr(inf, "df_resid_inference", None) or inf.df_resid),
        "n_clusters": None if inference is None else int(inf.df_resid_inference) + 1,
    }


def _fit(
    sm: Any,
    X: pd.DataFrame,
    y: NDArray[np.float64],
    df: pd.DataFrame,
    spec: RegressionSpec,
    pairs: pd.DataFrame | None,
) -> tuple[Any, Any]:
    """The configuration-level OLS and, for ``question_cluster``, the pair-level WLS."""
    if spec.cov_type == "question_cluster":
        if pairs is None:
            raise ConfigError(
                "fit_ols: cov_type='question_cluster' needs pairs= (the pair table: "
                "config_id, question_id, performance)."
            )
        res = sm.OLS(y, X).fit(use_t=True)
        return res, _question_cluster_fit(sm, X, y, df, pairs)
    kwds = dict(spec.cov_kwds) if spec.cov_kwds else None
    if spec.cov_type == "cluster" and not kwds:
        raise ConfigError("cov_type='cluster' needs cov_kwds={'groups': <array of cluster ids>}.")
    return sm.OLS(y, X).fit(cov_type=spec.cov_type, cov_kwds=kwds, use_t=True), None


def _question_cluster_fit(
    sm: Any, X: pd.DataFrame, y: NDArray[np.float64], df: pd.DataFrame, pairs: pd.DataFrame
) -> Any:
    """The pair-level WLS whose question-clustered covariance is the configuration-level
    OLS's (see :func:`fit_ols`, Notes)."""
    need = {"config_id", "question_id", "performance"}
    if not need <= set(pairs.columns) or "config_id" not in df.columns:
        raise DataError(
            f"fit_ols: expected a pair table with {sorted(need)} and a config_id column in the "
            f"QD rows; got pairs {list(pairs.columns)}."
        )
    if df["config_id"].duplicated().any():
        raise DataError(
            "fit_ols: expected one QD row per config_id for question-clustered errors; got "
            "duplicates (e.g. several aggregators of one configuration). Fit them apart."
        )
    p = pairs
    if "dataset" in p.columns and "dataset" in df.columns:
        p = p[p["dataset"].isin(df["dataset"].unique())]
    p = p[p["performance"].notna()]
    row = pd.Index(df["config_id"]).get_indexer(p["config_id"])
    p, row = p[row >= 0], row[row >= 0]
    t = 100.0 * p["performance"].to_numpy(dtype=np.float64)
    n_c = np.bincount(row, minlength=len(df)).astype(np.float64)
    means = np.bincount(row, weights=t, minlength=len(df)) / np.where(n_c > 0, n_c, 1.0)
    if (n_c == 0).any() or not np.allclose(means, y, rtol=0, atol=1e-6):
        raise DataError(
            "fit_ols: expected the outcome to be each configuration's mean of 100 x the pairs' "
            "performance (question-clustered errors split it by question); it is not. Pass "
            "the pair table the QD table was built from."
        )
    groups = pd.factorize(p["question_id"])[0]
    wls = sm.WLS(t, X.to_numpy()[row], weights=1.0 / n_c[row])
    return wls.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)


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


def _with_raw_units(
    coefs: pd.DataFrame,
    res: Any,
    scaling: Mapping[str, tuple[float, float]],
    spec: RegressionSpec,
) -> pd.DataFrame:
    """Add the coefficients in raw units: b_raw = A b, Cov(b_raw) = A Cov(b) Aᵀ.

    A undoes the z-scores: a predictor's slope is divided by its SD, and the intercept loses
    Σ slope·mean/SD (the intercept at raw quality = diversity = 0). Intervals use the fit's
    critical value, so a slope's raw interval is its standardised interval divided by the SD.
    """
    from scipy import stats as st

    terms = list(coefs["term"])
    A = np.eye(len(terms))
    units = ["points"] + [RAW_UNITS.get(p, f"points per unit of {p}") for p in spec.predictors]
    units += [f"points per unit of {c}" for c in spec.controls]
    for p in spec.predictors:
        if p in scaling:
            mean, sd = scaling[p]
            j = terms.index(p + "_z")
            A[j, j] = 1.0 / sd
            A[0, j] = -mean / sd
    b = A @ coefs["estimate"].to_numpy(dtype=np.float64)
    se = np.sqrt(np.diag(A @ np.asarray(res.cov_params()) @ A.T))
    df_inf = getattr(res, "df_resid_inference", None) or res.df_resid
    crit = float(st.t.ppf(1 - spec.alpha / 2, df_inf))
    return coefs.assign(
        estimate_raw=b,
        std_error_raw=se,
        ci_low_raw=b - crit * se,
        ci_high_raw=b + crit * se,
        unit_raw=units,
    )


def fit_by(
    qd_table: pd.DataFrame,
    spec: RegressionSpec | None = None,
    *,
    by: str = "dataset",
    pairs: pd.DataFrame | None = None,
) -> dict[str, OLSResult]:
    """Fit :func:`fit_ols` separately within each group of ``by`` (standardising within it);
    ``pairs`` (the pair table, for ``question_cluster``) is passed on, restricted to the group."""
    if by not in qd_table.columns:
        raise DataError(f"fit_by: expected a {by!r} column; got {list(qd_table.columns)}.")
    out = {}
    for key, g in qd_table.groupby(by, sort=True):
        try:
            p = None if pairs is None else pairs[pairs[by] == key]
            out[str(key)] = fit_ols(g, spec, pairs=p)
        except DataError as exc:
            raise DataError(f"{by} {key!r}: {exc.message}", column=exc.column) from exc
    return out


def compare_terms(result: OLSResult, a: str = "quality_z", b: str = "diversity_z") -> pd.DataFrame:
    """Wald test of ``a = b`` (e.g. α = β) under the fit's covariance.

    Returns
    -------
    pandas.DataFrame
        One row: ``contrast`` (``"a - b"``), ``estimate`` (a − b), ``std_error``, ``statistic``
        (t, with the fit's inference degrees of freedom), ``p_value``, ``ci_low``, ``ci_high``.
    """
    terms = list(result.coefs["term"])
    for t in (a, b):
        if t not in terms:
            raise ConfigError(f"compare_terms: expected a term of the fit {terms}; got {t!r}.")
    r = np.zeros(len(terms))
    r[terms.index(a)] = 1.0
    r[terms.index(b)] = -1.0
    tt = result.cov_results.t_test(r)
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
    formula, corr_quality_diversity, vif, df_inference`` (degrees of freedom of the t-based
    p-values and intervals), plus one ``quality_z - diversity_z`` row per fit (the Wald test
    of α = β; its raw-unit columns are NaN, the two slopes having different units) when both
    terms are present. The raw-unit columns (``estimate_raw`` …) follow the standardised ones."""
    rows = []
    for key, res in results.items():
        c = res.coefs.copy()
        terms = set(c["term"])
        if {"quality_z", "diversity_z"} <= terms:
            w = compare_terms(res).rename(columns={"contrast": "term"})
            c = pd.concat([c, w], ignore_index=True)
        c.insert(0, by, key)
        for s in (
            "n_obs",
            "r2",
            "adj_r2",
            "cov_type",
            "formula",
            "corr_quality_diversity",
            "vif",
            "df_inference",
        ):
            c[s] = res.stats[s]
        rows.append(c)
    return pd.concat(rows, ignore_index=True)
