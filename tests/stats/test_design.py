"""Designs of configurations on real candidate QD tables (shipped CSQA outputs, plurality vote)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.design import DESIGNS, choose_configs, chosen_specs, design_criteria
from qdanalysis.errors import ConfigError, DataError


def _candidate_analysis(outputs: pd.DataFrame, embedder, cache):
    """300 candidate configurations of 6 slots: quality and diversity from the pair engine (via
    the pipeline; plurality-vote performance is computed but no design reads it)."""
    import warnings

    from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
    from qdanalysis.errors import DataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # long texts embedded by their prefix
        res = analyze(
            outputs[outputs["dataset"] == "rereading/csqa"],
            AnalysisSpec(n_proposers=6, max_configs=300),
            embedder=embedder,
            cache=cache,
            progress=False,
        )
    return res


@pytest.fixture(scope="module")
def candidate_analysis(small_outputs):
    """Real CSQA outputs (40 questions), the model-free hashing embedder of the stats tests."""
    from qdanalysis.analysis.sensitivity import HashingEmbedder

    return _candidate_analysis(small_outputs, HashingEmbedder(n_features=128), False)


@pytest.fixture(scope="module")
def candidates(candidate_analysis) -> pd.DataFrame:
    return candidate_analysis.qd_table.reset_index(drop=True)


def _random_criteria(candidates: pd.DataFrame, n: int, seeds: range) -> np.ndarray:
    return np.array(
        [
            design_criteria(choose_configs(candidates, n, seed=s), candidates)[
                "var_alpha_minus_beta"
            ]
            for s in seeds
        ]
    )


def _min_var_beats_random(candidates: pd.DataFrame) -> None:
    assert len(candidates) == 300
    rand = _random_criteria(candidates, 60, range(20))
    best = design_criteria(choose_configs(candidates, 60, design="min_var"), candidates)
    assert best["var_alpha_minus_beta"] < rand.min()
    assert best["var_alpha_minus_beta"] < 0.6 * np.median(rand)


def test_min_var_lowers_the_variance_of_alpha_minus_beta_below_every_random_draw(candidates):
    _min_var_beats_random(candidates)


@pytest.mark.slow
def test_min_var_beats_random_with_minilm_on_all_csqa_questions(
    shipped_outputs, minilm, shipped_cache_dir
):
    res = _candidate_analysis(shipped_outputs, minilm, shipped_cache_dir)
    _min_var_beats_random(res.qd_table.reset_index(drop=True))


def test_decorrelated_and_d_optimal_meet_their_own_criteria(candidates):
    dec = design_criteria(choose_configs(candidates, 60, design="decorrelated"), candidates)
    assert abs(dec["corr"]) < 1e-3
    dopt = design_criteria(choose_configs(candidates, 60, design="d_optimal"), candidates)
    rand_logdet = [
        design_criteria(choose_configs(candidates, 60, seed=s), candidates)["log_det"]
        for s in range(20)
    ]
    assert dopt["log_det"] > max(rand_logdet)


@pytest.mark.parametrize("design", DESIGNS)
def test_designs_are_deterministic_under_a_seed_and_return_candidate_rows(candidates, design):
    a = choose_configs(candidates, 30, design=design, seed=3)
    b = choose_configs(candidates, 30, design=design, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 30
    assert a["config_id"].is_unique
    assert set(a["config_id"]) <= set(candidates["config_id"])
    if design == "random":
        c = choose_configs(candidates, 30, design=design, seed=4)
        assert set(c["config_id"]) != set(a["config_id"])


def _toy() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    q = rng.normal(size=50)
    return pd.DataFrame({"quality": q, "diversity": 0.5 * q + rng.normal(size=50)})


def test_more_configurations_than_candidates_fails():
    with pytest.raises(
        ConfigError, match=r"choose_configs\(n\): expected an integer from 3 to the 50"
    ):
        choose_configs(_toy(), 51, design="min_var")
    with pytest.raises(ConfigError, match="choose_configs"):
        choose_configs(_toy(), 2)


def test_unknown_design_and_bad_tables_fail():
    with pytest.raises(ConfigError, match="expected one of"):
        choose_configs(_toy(), 10, design="optimal")
    with pytest.raises(DataError, match="quality"):
        choose_configs(_toy().drop(columns="quality"), 10)
    two = pd.concat([_toy().assign(dataset="a"), _toy().assign(dataset="b")], ignore_index=True)
    with pytest.raises(DataError, match="Call it once per dataset"):
        choose_configs(two, 10)
    with pytest.raises(DataError, match="rows of candidates"):
        design_criteria(_toy().iloc[:5].set_axis(range(100, 105)), _toy())


def test_criterion_matches_the_fitted_regressions_covariance():
    # c'(X'X)^-1 c equals statsmodels' Var(alpha - beta) / sigma^2 on the same design.
    import statsmodels.api as sm

    from qdanalysis.analysis.regression import standardize

    toy = _toy()
    chosen = choose_configs(toy, 20, design="min_var")
    z = standardize(toy, ["quality", "diversity"]).loc[chosen.index]
    X = sm.add_constant(z[["quality_z", "diversity_z"]].to_numpy())
    xtx_inv = np.linalg.inv(X.T @ X)
    c = np.array([0.0, 1.0, -1.0])
    assert design_criteria(chosen, toy)["var_alpha_minus_beta"] == pytest.approx(c @ xtx_inv @ c)


def test_chosen_specs_are_the_configurations_to_aggregate(candidate_analysis, candidates):
    configs = candidate_analysis.configs["rereading/csqa"]
    chosen = choose_configs(candidates, 20, design="min_var")
    specs = chosen_specs(chosen, configs)
    assert [s.config_id for s in specs] == list(chosen["config_id"])
    with pytest.raises(DataError, match="unknown"):
        chosen_specs(chosen.assign(config_id="nope"), configs)
