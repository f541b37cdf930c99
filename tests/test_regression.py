from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.regression import (
    RegressionSpec,
    coefficient_table,
    compare_terms,
    fit_by,
    fit_ols,
    standardize,
)
from qdanalysis.errors import DataError, StatisticalWarning


@pytest.fixture
def table(rng):
    n = 120
    q = rng.normal(60, 8, n)
    d = 0.3 * (q - 60) / 8 + rng.normal(2.5, 0.3, n)
    t = 3.0 * (q - q.mean()) / q.std(ddof=1) + 1.0 * (d - d.mean()) / d.std(ddof=1) + 70
    t = t + rng.standard_t(5, n) * (1 + 0.5 * np.abs(q - 60) / 8)
    return pd.DataFrame({"quality": q, "diversity": d, "performance": t})


def design(df):
    z = standardize(df, ["quality", "diversity"])
    return np.column_stack([np.ones(len(df)), z["quality_z"], z["diversity_z"]]), df[
        "performance"
    ].to_numpy()


def test_matches_direct_least_squares(table):
    X, y = design(table)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    n, k = X.shape
    sigma2 = resid @ resid / (n - k)
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(X.T @ X)))
    r2 = 1 - resid @ resid / np.sum((y - y.mean()) ** 2)
    res = fit_ols(table)
    np.testing.assert_allclose(res.coefs["estimate"], beta, rtol=1e-10)
    np.testing.assert_allclose(res.coefs["std_error"], se, rtol=1e-10)
    assert res.stats["r2"] == pytest.approx(r2, rel=1e-12)
    assert res.stats["n_obs"] == n
    assert res.stats["formula"] == "performance ~ quality_z + diversity_z"
    ci = res.coefs[["ci_low", "ci_high"]].to_numpy()
    assert np.all(ci[:, 0] < beta)
    assert np.all(beta < ci[:, 1])


def test_hc3_matches_the_sandwich_formula(table):
    X, y = design(table)
    bread = np.linalg.inv(X.T @ X)
    beta = bread @ X.T @ y
    e = y - X @ beta
    h = np.einsum("ij,jk,ik->i", X, bread, X)
    meat = X.T @ (X * (e**2 / (1 - h) ** 2)[:, None])
    se = np.sqrt(np.diag(bread @ meat @ bread))
    res = fit_ols(table, RegressionSpec(cov_type="HC3"))
    np.testing.assert_allclose(res.coefs["std_error"], se, rtol=1e-8)
    assert res.stats["cov_type"] == "HC3"


def test_wald_test_of_equal_coefficients(table):
    res = fit_ols(table)
    cov = np.asarray(res.raw.cov_params())
    b = res.coefs["estimate"].to_numpy()
    diff = b[1] - b[2]
    se = np.sqrt(cov[1, 1] + cov[2, 2] - 2 * cov[1, 2])
    w = compare_terms(res)
    assert w.loc[0, "estimate"] == pytest.approx(diff)
    assert w.loc[0, "std_error"] == pytest.approx(se)
    assert w.loc[0, "statistic"] == pytest.approx(diff / se)


def test_fit_by_standardises_within_each_dataset(table):
    other = table.assign(quality=table["quality"] * 10 + 5)
    both = pd.concat([table.assign(dataset="a"), other.assign(dataset="b")])
    fits = fit_by(both)
    np.testing.assert_allclose(fits["a"].coefs["estimate"], fits["b"].coefs["estimate"])
    coefs = coefficient_table(fits)
    assert set(coefs["term"]) == {
        "Intercept",
        "quality_z",
        "diversity_z",
        "quality_z - diversity_z",
    }
    assert len(coefs) == 8


def test_zero_variance_is_a_clear_error(table):
    flat = table.assign(diversity=2.0)
    with pytest.raises(DataError, match="sd = 0"):
        fit_ols(flat)


def test_collinearity_and_small_samples_warn(table, rng):
    col = table.assign(diversity=table["quality"] + rng.normal(0, 0.01, len(table)))
    with pytest.warns(StatisticalWarning, match="collinear"):
        res = fit_ols(col)
    assert res.stats["vif"] > 100
    with pytest.warns(StatisticalWarning, match="fragile"):
        fit_ols(table.iloc[:20])
