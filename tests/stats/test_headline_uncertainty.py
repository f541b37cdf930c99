"""Headline uncertainty: question-clustered errors, one p-value convention, the bootstrap floor,
the pair-level model and raw-unit coefficients, on a small real analysis of the shipped data."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from qdanalysis.analysis.regression import (
    RegressionSpec,
    ci_cov_type,
    coefficient_table,
    fit_by,
    fit_ols,
    format_p,
)
from qdanalysis.analysis.uncertainty import (
    bootstrap_coefficients,
    bootstrap_coefs,
    bootstrap_p_value,
    fit_pair_model,
    pair_model_table,
    uncertainty_table,
)
from qdanalysis.errors import ConfigError, DataError, StatisticalWarning


def _one(small_analysis):
    ds = sorted(small_analysis.qd_table["dataset"].unique())[0]
    qd = small_analysis.qd_table[small_analysis.qd_table["dataset"] == ds]
    pairs = small_analysis.pairs[small_analysis.pairs["dataset"] == ds]
    return qd, pairs


def _fit(qd, spec, pairs=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticalWarning)
        return fit_ols(qd, spec, pairs=pairs)


def _direct_sandwich(qd, pairs):
    """Question-clustered covariance by hand: per-question sums of the pair-level scores."""
    q, d = qd["quality"].to_numpy(), qd["diversity"].to_numpy()
    X = np.column_stack(
        [np.ones(len(qd)), (q - q.mean()) / q.std(ddof=1), (d - d.mean()) / d.std(ddof=1)]
    )
    y = qd["performance"].to_numpy()
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    row = pd.Index(qd["config_id"]).get_indexer(pairs["config_id"])
    n_c = np.bincount(row, minlength=len(qd))
    e = 100 * pairs["performance"].to_numpy() - X[row] @ b  # pair residuals
    scores = X[row] * (e / n_c[row])[:, None]
    S = pd.DataFrame(scores).groupby(pairs["question_id"].to_numpy()).sum().to_numpy()
    bread = np.linalg.inv(X.T @ X)
    G, N, k = S.shape[0], len(pairs), X.shape[1]
    return b, G / (G - 1) * (N - 1) / (N - k) * bread @ (S.T @ S) @ bread, G


def test_question_clustered_covariance_equals_direct_sandwich(small_analysis):
    qd, pairs = _one(small_analysis)
    res = _fit(qd, RegressionSpec(cov_type="question_cluster"), pairs)
    b, V, G = _direct_sandwich(qd, pairs)
    c = res.coefs.set_index("term")
    np.testing.assert_allclose(c["estimate"].to_numpy(), b, rtol=1e-9)
    np.testing.assert_allclose(c["std_error"].to_numpy(), np.sqrt(np.diag(V)), rtol=1e-9)
    # t with G - 1 degrees of freedom
    t = b / np.sqrt(np.diag(V))
    np.testing.assert_allclose(c["p_value"], 2 * st.t.sf(np.abs(t), G - 1), rtol=1e-8)
    assert res.stats["df_inference"] == G - 1
    assert res.stats["n_clusters"] == G
    # Point estimates are the configuration-level OLS's.
    ols = _fit(qd, RegressionSpec()).coefs
    np.testing.assert_allclose(c["estimate"], ols["estimate"], rtol=1e-10)


def test_question_clustered_wald_test_uses_clustered_covariance(small_analysis):
    qd, pairs = _one(small_analysis)
    res = _fit(qd, RegressionSpec(cov_type="question_cluster"), pairs)
    _, V, _ = _direct_sandwich(qd, pairs)
    w = coefficient_table({"x": res}).set_index("term").loc["quality_z - diversity_z"]
    assert w["std_error"] == pytest.approx(np.sqrt(V[1, 1] + V[2, 2] - 2 * V[1, 2]), rel=1e-9)


def test_question_cluster_needs_the_matching_pair_table(small_analysis):
    qd, pairs = _one(small_analysis)
    with pytest.raises(ConfigError, match="pairs="):
        _fit(qd, RegressionSpec(cov_type="question_cluster"))
    shifted = pairs.assign(performance=pairs["performance"] * 0.5)
    with pytest.raises(DataError, match="mean of 100 x the pairs"):
        _fit(qd, RegressionSpec(cov_type="question_cluster"), shifted)


@pytest.mark.parametrize("cov", ["nonrobust", "HC3"])
def test_every_p_value_is_t_based_with_df_resid(small_analysis, cov):
    qd, _ = _one(small_analysis)
    res = _fit(qd, RegressionSpec(cov_type=cov))
    c = res.coefs
    df = len(qd) - 3
    np.testing.assert_allclose(c["p_value"], 2 * st.t.sf(np.abs(c["statistic"]), df), rtol=1e-8)
    half = c["ci_high"] - c["estimate"]
    np.testing.assert_allclose(half, st.t.ppf(0.975, df) * c["std_error"], rtol=1e-8)


def test_uncertainty_table_has_one_convention_and_clustered_rows(small_analysis):
    u = uncertainty_table(small_analysis.qd_table, pairs=small_analysis.pairs)
    assert set(u["method"]) == {"nonrobust", "HC3", "question_cluster"}
    for _, r in u.iterrows():
        t = r["estimate"] / r["std_error"]
        assert r["p_value"] == pytest.approx(2 * st.t.sf(abs(t), r["df"]), rel=1e-6)
    # HC3 and plain OLS share df; the clustered rows use G - 1.
    nq = small_analysis.pairs.groupby("dataset")["question_id"].nunique()
    cl = u[u["method"] == "question_cluster"]
    assert (cl["df"].to_numpy() == (cl["dataset"].map(nq) - 1).to_numpy()).all()


def test_bootstrap_p_value_floor():
    assert bootstrap_p_value(np.full(200, 1.0)) == (1 / 200, True)
    assert bootstrap_p_value(np.r_[np.full(199, 1.0), -1.0]) == (0.01, False)
    p, floor = bootstrap_p_value([np.nan, 1.0, 2.0])
    assert (p, floor) == (0.5, True)  # the floor counts the finite replicates
    assert format_p(1 / 200, floor=True) == "< 0.005"


def test_bootstrap_summary_never_reports_zero(small_analysis):
    boot = bootstrap_coefs(small_analysis, n_boot=40, seed=0, progress=False)
    s = boot.summary[boot.summary["term"] != "r2"]
    assert (s["p_value"] >= 1 / s["n_valid"]).all()
    assert s["p_floor"].any()  # on these data some term never crosses 0 in 40 replicates
    assert (s.loc[s["p_floor"], "p_value"] == 1 / s.loc[s["p_floor"], "n_valid"]).all()


def test_raw_unit_coefficients_equal_the_unstandardised_fit(small_analysis):
    qd, _ = _one(small_analysis)
    for cov in ("nonrobust", "HC3"):
        z = _fit(qd, RegressionSpec(cov_type=cov)).coefs.set_index("term")
        raw = _fit(qd, RegressionSpec(cov_type=cov, standardize=False)).coefs.set_index("term")
        for zt, rt in (
            ("Intercept", "Intercept"),
            ("quality_z", "quality"),
            ("diversity_z", "diversity"),
        ):
            for col in ("estimate", "std_error", "ci_low", "ci_high"):
                assert z.loc[zt, f"{col}_raw"] == pytest.approx(raw.loc[rt, col], rel=1e-8)
    assert z.loc["quality_z", "unit_raw"] == "points per quality point"
    assert z.loc["diversity_z", "unit_raw"] == "points per Vendi unit"


def test_bootstrap_raw_slopes_match_the_fit(small_analysis):
    boot = bootstrap_coefs(small_analysis, n_boot=20, seed=1, progress=False)
    coefs = small_analysis.coefficients.set_index(["dataset", "term"])
    s = boot.summary.set_index(["dataset", "term"])
    for key in s.index:
        if key[1] in ("quality_z", "diversity_z"):
            assert s.loc[key, "estimate_raw"] == pytest.approx(coefs.loc[key, "estimate_raw"])
            assert s.loc[key, "ci_low_raw"] <= s.loc[key, "ci_high_raw"]
    table = bootstrap_coefficients(small_analysis.coefficients, boot).set_index(["dataset", "term"])
    for key in s.index:
        if key[1] != "r2":
            assert table.loc[key, "ci_low"] == s.loc[key, "ci_low"]
            assert table.loc[key, "estimate"] == coefs.loc[key, "estimate"]
    assert table.xs("Intercept", level="term")["std_error"].isna().all()


def test_pair_model_equals_statsmodels_with_question_dummies(small_analysis):
    import statsmodels.formula.api as smf

    _, pairs = _one(small_analysis)
    p = pairs[pairs["question_id"].isin(sorted(pairs["question_id"].unique())[:25])].copy()
    mine = fit_pair_model(p).set_index("term")
    p["y"] = 100 * p["performance"]
    p["zq"] = (p["quality"] - p["quality"].mean()) / p["quality"].std()
    p["zd"] = (p["diversity"] - p["diversity"].mean()) / p["diversity"].std()
    ref = smf.ols("y ~ zq + zd + C(question_id)", p).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(p["question_id"])[0]}, use_t=True
    )
    ci = ref.conf_int()
    for term, name in (("quality_z", "zq"), ("diversity_z", "zd")):
        assert mine.loc[term, "estimate"] == pytest.approx(ref.params[name], rel=1e-8)
        assert mine.loc[term, "std_error"] == pytest.approx(ref.bse[name], rel=1e-8)
        assert mine.loc[term, "p_value"] == pytest.approx(ref.pvalues[name], rel=1e-6)
        assert mine.loc[term, "ci_low"] == pytest.approx(ci.loc[name, 0], rel=1e-8)
    w = ref.t_test("zq - zd")
    assert mine.loc["quality_z - diversity_z", "std_error"] == pytest.approx(
        float(np.asarray(w.sd).ravel()[0]), rel=1e-8
    )
    assert mine.loc["quality_z", "estimate_raw"] == pytest.approx(
        ref.params["zq"] / (100 * p["quality"].std())
    )


def test_pair_model_table_covers_every_dataset(small_analysis):
    pm = pair_model_table(small_analysis)
    assert set(pm["dataset"]) == set(small_analysis.qd_table["dataset"])
    n = small_analysis.pairs.groupby("dataset").size()
    assert (pm.groupby("dataset")["n_pairs"].first() <= n).all()


def test_ci_method_maps_to_one_covariance():
    assert ci_cov_type("ols") == "nonrobust"
    assert ci_cov_type("ols", "HC1") == "HC1"
    assert ci_cov_type("hc3") == "HC3"
    assert ci_cov_type("bootstrap") == "nonrobust"
    with pytest.raises(ConfigError, match="cov_type"):
        ci_cov_type("cluster", "HC3")
    with pytest.raises(ConfigError, match="ci"):
        ci_cov_type("wild")


def test_analysis_ci_chooses_the_headline(small_analysis):
    from qdanalysis.analysis.pipeline import _with_ci

    reg = RegressionSpec(cov_type="question_cluster")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticalWarning)
        fits = fit_by(small_analysis.fit_table, reg, pairs=small_analysis.pairs)
    clustered = coefficient_table(fits)
    u = uncertainty_table(small_analysis.fit_table, pairs=small_analysis.pairs)
    cl = u[u["method"] == "question_cluster"].set_index(["dataset", "term"])
    c = clustered.set_index(["dataset", "term"])
    for key in cl.index:
        assert c.loc[key, "std_error"] == pytest.approx(cl.loc[key, "std_error"])
    boot = _with_ci(
        replace(small_analysis, spec=replace(small_analysis.spec, ci="bootstrap", n_boot=30)),
        progress=False,
    )
    assert boot.bootstrap is not None
    assert (boot.coefficients["cov_type"] == "bootstrap").all()
    assert (boot.coefficients["ci"] == "bootstrap").all()
    slopes = boot.coefficients[boot.coefficients["term"] != "Intercept"]
    assert (slopes["p_value"] > 0).all()
    assert boot.parameters["bootstrap"]["n_boot"] == 30


def test_spec_labels_round_trip_and_unknown_ids_are_refused(small_outputs):
    from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
    from qdanalysis.analysis.sensitivity import HashingEmbedder

    spec = AnalysisSpec(labels={"b": "B", "a": "A & co"}, ci="cluster")
    assert spec.labels == (("a", "A & co"), ("b", "B"))
    assert AnalysisSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["labels"] == {"a": "A & co", "b": "B"}
    assert spec.label("a") == "A & co"
    assert spec.label("zzz") == "zzz"
    with pytest.raises(ConfigError, match="labels"):
        AnalysisSpec(labels={"a": ""})
    with pytest.raises(ConfigError, match="ci"):
        AnalysisSpec(ci="cluster", cov_type="HC3")
    with pytest.raises(ConfigError, match="unknown"):
        analyze(
            small_outputs,
            AnalysisSpec(n_proposers=4, max_configs=20, labels={"no/such": "X"}),
            embedder=HashingEmbedder(n_features=32),
            cache=False,
            progress=False,
        )
