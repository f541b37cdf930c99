import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.pairs import summarise_pairs
from qdanalysis.analysis.regression import RegressionSpec, fit_ols
from qdanalysis.analysis.uncertainty import (
    _weighted_fits,
    bootstrap_coefs,
    diagnostics_table,
    pair_matrices,
    question_weights,
    r2_table,
    uncertainty_table,
)
from qdanalysis.errors import ConfigError, StatisticalWarning


def _pairs(seed=0, n_cfg=35, n_q=12, drop=0):
    rng = np.random.default_rng(seed)
    rows = []
    qa = rng.uniform(0.2, 0.8, n_cfg)
    for c in range(n_cfg):
        for q in range(n_q):
            qual = float(np.clip(qa[c] + rng.normal(0, 0.1), 0, 1))
            div = float(1 + 4 * rng.uniform())
            perf = float(rng.uniform() < 0.3 + 0.5 * qual + 0.02 * div)
            rows.append(
                {
                    "dataset": "toy",
                    "config_id": f"c{c:02d}",
                    "question_id": f"q{q:02d}",
                    "quality": qual,
                    "diversity": div,
                    "performance": perf,
                }
            )
    df = pd.DataFrame(rows)
    if drop:
        df = df.drop(rng.choice(len(df), drop, replace=False)).reset_index(drop=True)
    return df


def _reference_replicate(pairs, qids, w):
    """Slow reference: materialise the resampled questions, average, standardise, fit."""
    counts = dict(zip(qids, w, strict=True))
    rep = pairs.loc[pairs.index.repeat(pairs["question_id"].map(counts).astype(int))]
    summ = summarise_pairs(rep)
    res = fit_ols(summ, RegressionSpec())
    c = res.coefs.set_index("term")["estimate"]
    return [c["quality_z"], c["diversity_z"], c["quality_z"] - c["diversity_z"], res.stats["r2"]]


def test_unweighted_replicate_equals_statsmodels():
    pairs = _pairs()
    _, _, mats = pair_matrices(pairs, "toy")
    got = _weighted_fits(mats, np.ones((1, 12)), ddof=1)[0]
    res = fit_ols(summarise_pairs(pairs), RegressionSpec())
    c = res.coefs.set_index("term")["estimate"]
    np.testing.assert_allclose(got[:2], [c["quality_z"], c["diversity_z"]], rtol=1e-10)
    np.testing.assert_allclose(got[3], res.stats["r2"], rtol=1e-10)


@pytest.mark.parametrize("drop", [0, 15])
def test_vectorised_replicates_equal_reference_loop(drop):
    pairs = _pairs(seed=1, drop=drop)
    _, qids, mats = pair_matrices(pairs, "toy")
    W = question_weights(qids.size, 6, np.random.default_rng(3))
    got = _weighted_fits(mats, W, ddof=1)
    for b in range(W.shape[0]):
        np.testing.assert_allclose(got[b][:4], _reference_replicate(pairs, qids, W[b]), rtol=1e-9)


def test_bootstrap_is_seeded_and_summarised():
    pairs = _pairs(seed=2)
    a = bootstrap_coefs(pairs, n_boot=200, seed=7, progress=False)
    b = bootstrap_coefs(pairs, n_boot=200, seed=7, progress=False)
    pd.testing.assert_frame_equal(a.draws, b.draws)
    s = a.summary.set_index("term")
    assert list(s.index) == ["quality_z", "diversity_z", "quality_z - diversity_z", "r2"]
    assert (s["ci_low"] <= s["ci_high"]).all()
    assert (s["n_valid"] == 200).all()
    full = fit_ols(summarise_pairs(pairs), RegressionSpec()).coefs.set_index("term")
    assert s.loc["quality_z", "estimate"] == pytest.approx(full.loc["quality_z", "estimate"])


def test_bootstrap_rejects_tiny_n_boot():
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_coefs(_pairs(), n_boot=1, progress=False)


def test_bootstrap_on_real_pairs(small_analysis):
    res = bootstrap_coefs(small_analysis, n_boot=100, seed=0, progress=False)
    s = res.summary[res.summary["term"] == "quality_z"].set_index("dataset")
    coefs = small_analysis.coefficients
    for ds in s.index:
        a = coefs[(coefs["dataset"] == ds) & (coefs["term"] == "quality_z")]["estimate"].iloc[0]
        assert s.loc[ds, "estimate"] == pytest.approx(a, rel=1e-8)


def test_uncertainty_table_matches_statsmodels(small_analysis):
    qd = small_analysis.qd_table
    boot = bootstrap_coefs(small_analysis, n_boot=50, progress=False)
    u = uncertainty_table(qd, bootstrap=boot)
    assert set(u["method"]) == {"nonrobust", "HC3", "bootstrap"}
    ds = sorted(qd["dataset"].unique())[0]
    g = qd[qd["dataset"] == ds]
    hc3 = fit_ols(g, RegressionSpec(cov_type="HC3")).coefs.set_index("term")
    row = u[(u["dataset"] == ds) & (u["method"] == "HC3") & (u["term"] == "diversity_z")]
    assert row["std_error"].iloc[0] == pytest.approx(hc3.loc["diversity_z", "std_error"])
    # The Wald difference equals alpha - beta.
    ols = u[(u["dataset"] == ds) & (u["method"] == "nonrobust")].set_index("term")
    assert ols.loc["quality_z - diversity_z", "estimate"] == pytest.approx(
        ols.loc["quality_z", "estimate"] - ols.loc["diversity_z", "estimate"]
    )


def test_r2_table_single_predictor_is_squared_correlation(small_analysis):
    qd = small_analysis.qd_table
    r = r2_table(qd).set_index("dataset")
    for ds, g in qd.groupby("dataset"):
        rho = np.corrcoef(g["quality"], g["performance"])[0, 1]
        assert r.loc[ds, "r2_quality_only"] == pytest.approx(rho**2)
        assert r.loc[ds, "r2_full"] >= max(
            r.loc[ds, "r2_quality_only"], r.loc[ds, "r2_diversity_only"]
        )


def test_diagnostics_warns_on_collinear_predictors():
    rng = np.random.default_rng(0)
    q = rng.normal(size=40)
    qd = pd.DataFrame(
        {"dataset": "x", "quality": q, "diversity": q + rng.normal(0, 0.05, 40), "performance": q}
    )
    with pytest.warns(StatisticalWarning, match="cannot be told apart"):
        d = diagnostics_table(qd)
    assert bool(d["collinear"].iloc[0])
    assert d["vif"].iloc[0] == pytest.approx(1 / (1 - d["corr_quality_diversity"].iloc[0] ** 2))
