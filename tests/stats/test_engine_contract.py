"""One measuring engine: every table reports the same performance, α and β for every aggregator.

The QD table, the sensitivity table's default row and the bootstrap's full-sample estimate are
all computed from the pairs the engine (``qdanalysis.analysis.pairs``) measures with the
analysis's aggregator, Vendi order and tolerance; they must agree to 1e-12.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.aggregators import (
    AGGREGATORS,
    PerformanceTable,
    RunRows,
    get_aggregator,
    spec_aggregator_label,
)
from qdanalysis.analysis.diversity import pairwise_cosine_distance, vendi_score
from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
from qdanalysis.analysis.sensitivity import HashingEmbedder, measure_table, sensitivity_table
from qdanalysis.analysis.uncertainty import _weighted_means, bootstrap_coefs, pair_matrices
from qdanalysis.configs import ConfigSpec
from qdanalysis.errors import ConfigError, DataError, DataWarning, QDAnalysisWarning
from qdanalysis.outputs import load_outputs

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "data/runs/csqa_smollm2_gemma3/outputs.jsonl"
TOL = 1e-12


@pytest.fixture(scope="module")
def run_outputs() -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # five empty outputs, reported elsewhere
        return load_outputs([RUN])


def _analyze(outputs: pd.DataFrame, spec: AnalysisSpec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QDAnalysisWarning)  # small-n and dropped-pair notes
        return analyze(
            outputs, spec, embedder=HashingEmbedder(n_features=128), cache=False, progress=False
        )


def _user_table(small_analysis) -> PerformanceTable:
    """A user-supplied aggregator: a seeded score per pair, some pairs without one."""
    pairs = small_analysis.pairs[["dataset", "config_id", "question_id"]]
    rng = np.random.default_rng(0)
    table = pairs.assign(performance=rng.uniform(size=len(pairs)))
    return PerformanceTable(table=table.sample(frac=0.9, random_state=1), name="judge")


def _check_contract(res, outputs: pd.DataFrame) -> None:
    qd = res.qd_table.set_index(["dataset", "config_id"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QDAnalysisWarning)
        m = measure_table(res, outputs, pooled=False).set_index(["dataset", "config_id"])
        sens = sensitivity_table(m.reset_index(), spec=res.spec)
        boot = bootstrap_coefs(res, n_boot=2, progress=False)
    m = m.loc[qd.index]
    np.testing.assert_allclose(m["performance"], qd["performance"], rtol=0, atol=TOL)
    np.testing.assert_allclose(m["quality_mean"], qd["quality"], rtol=0, atol=TOL)
    np.testing.assert_allclose(m["diversity_vendi_q1"], qd["diversity"], rtol=0, atol=TOL)
    coefs = res.coefficients.set_index(["dataset", "term"])
    default = sens[sens["is_default"]].set_index("dataset")
    est = boot.summary.set_index(["dataset", "term"])["estimate"]
    for ds, g in qd.groupby(level="dataset"):
        cids, _, mats = pair_matrices(res.pairs, ds)
        t = _weighted_means(mats, np.ones((1, mats["mask"].shape[1])))[2][0]
        np.testing.assert_allclose(t, g.loc[ds].loc[cids, "performance"], rtol=0, atol=TOL)
        for term, col in (("quality_z", "alpha"), ("diversity_z", "beta")):
            assert abs(default.loc[ds, col] - coefs.loc[(ds, term), "estimate"]) <= TOL
            assert abs(est[(ds, term)] - coefs.loc[(ds, term), "estimate"]) <= TOL
        assert abs(default.loc[ds, "r2"] - coefs.loc[(ds, "quality_z"), "r2"]) <= TOL


@pytest.mark.parametrize("aggregator", ["plurality_vote", "oracle", "user"])
def test_every_table_reports_the_same_numbers(aggregator, small_analysis, small_outputs):
    agg = _user_table(small_analysis) if aggregator == "user" else aggregator
    res = _analyze(small_outputs, AnalysisSpec(n_proposers=4, max_configs=60, aggregator=agg))
    assert set(res.qd_table["aggregator"]) == {res.aggregator.name}
    _check_contract(res, small_outputs)


def test_every_table_reports_the_same_numbers_for_run_rows(run_outputs):
    res = _analyze(run_outputs, AnalysisSpec(aggregator="llm"))
    assert isinstance(res.aggregator, RunRows)
    _check_contract(res, run_outputs)


def test_model_quality_reaches_the_bootstrap(small_outputs):
    csqa = small_outputs[small_outputs["dataset"] == "rereading/csqa"]  # 3 models: q varies
    res = _analyze(csqa, AnalysisSpec(n_proposers=4, max_configs=60, quality="model"))
    boot = bootstrap_coefs(res, n_boot=2, progress=False).summary.set_index(["dataset", "term"])
    coefs = res.coefficients.set_index(["dataset", "term"])
    for ds in res.qd_table["dataset"].unique():
        diff = boot.loc[(ds, "quality_z"), "estimate"] - coefs.loc[(ds, "quality_z"), "estimate"]
        assert abs(diff) <= TOL


# ------------------------------------------------------------------ reproduction 1 (the CLI)


def test_oracle_sensitivity_default_row_equals_the_main_fit(outputs_small, tmp_path):
    """``fit --aggregator oracle --sensitivity``: the default row used to regress plurality."""
    from qdanalysis.cli.fit import main

    src = tmp_path / "small.jsonl"
    outputs_small.to_json(src, orient="records", lines=True)
    out = tmp_path / "out"
    args = [
        "--outputs",
        str(src),
        "--aggregator",
        "oracle",
        "--sensitivity",
        "--max-configs",
        "40",
        "--no-figures",
        "--no-progress",
        "-q",
        "--out-dir",
        str(out),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QDAnalysisWarning)
        assert main(args) == 0
    coefs = pd.read_csv(out / "coefficients.csv").set_index("term")
    sens = pd.read_csv(out / "sensitivity.csv")
    row = sens[sens["is_default"]].iloc[0]
    assert row["n_obs"] == coefs.loc["quality_z", "n_obs"]
    assert abs(row["alpha"] - coefs.loc["quality_z", "estimate"]) <= TOL
    assert abs(row["beta"] - coefs.loc["diversity_z", "estimate"]) <= TOL
    assert abs(row["r2"] - coefs.loc["quality_z", "r2"]) <= TOL
    assert set(pd.read_csv(out / "qd_table.csv")["aggregator"]) == {"oracle"}
    side = json.loads((out / "sensitivity.json").read_text())
    assert side["parameters"]["spec"] == AnalysisSpec(aggregator="oracle", max_configs=40).to_dict()


# ------------------------------------------------------------------ reproduction 2 (a run store)


def _fit_run(tmp_path, capsys, *extra):
    """Run fit on the run store; returns the output folder and what it printed to stderr."""
    from qdanalysis.cli.fit import main

    out = tmp_path / "out"
    args = [
        "--outputs",
        str(RUN),
        "--aggregator",
        "llm",
        "--no-figures",
        "--no-progress",
        "-q",
        "--out-dir",
        str(out),
        *extra,
    ]
    assert main(args) == 0  # the CLI reports warnings on stderr
    return out, capsys.readouterr().err


def test_run_store_rows_say_what_produced_their_performance(tmp_path, capsys):
    out, _ = _fit_run(tmp_path, capsys)
    qd = pd.read_csv(out / "qd_table.csv")
    specs = {
        json.loads(line)["method"] + "/" + spec_aggregator_label(ConfigSpec.from_json(line))
        for line in (RUN.parent / "configs.jsonl").read_text().splitlines()
    }
    assert set(qd["method"] + "/" + qd["aggregator"]) == specs
    assert not qd.duplicated(["name", "method", "aggregator"]).any()
    by = set(zip(qd["method"], qd["aggregator"], strict=True))
    assert ("self_moa", "llm:smollm2") in by
    assert ("self_moa", "plurality_vote") in by
    assert ("single", "none") in by
    assert "llm" not in set(qd["aggregator"])


def test_run_store_sensitivity_leaves_one_slot_configs_out_of_cosine_fits(tmp_path, capsys):
    out, err = _fit_run(tmp_path, capsys, "--sensitivity")
    sens = pd.read_csv(out / "sensitivity.csv")
    n = sens.groupby("diversity_measure")["n_obs"].max()
    assert n["diversity_cosine"] == 5  # the two single-model configurations have no pairs
    assert n["diversity_vendi_q1"] == 7  # a one-item set has Vendi Score 1
    assert "2 of 7 configurations have no value of diversity_cosine" in err
    coefs = pd.read_csv(out / "coefficients.csv").set_index("term")
    row = sens[sens["is_default"]].iloc[0]
    assert abs(row["alpha"] - coefs.loc["quality_z", "estimate"]) <= TOL


def test_diversity_of_one_item():
    one = np.ones((3, 1, 1))
    np.testing.assert_array_equal(vendi_score(one), [1.0, 1.0, 1.0])
    assert np.isnan(pairwise_cosine_distance(one)).all()
    with pytest.raises(DataError, match="n >= 1"):
        pairwise_cosine_distance(np.ones((2, 0, 0)))


# ------------------------------------------------------------------ the spec and the registry


def test_spec_round_trips_and_rejects_unknown_keys_by_name():
    spec = AnalysisSpec(vendi_q=float("inf"), proposer_key=("model", "prompt"), aggregator="oracle")
    d = spec.to_dict()
    assert d["vendi_q"] == "inf"
    assert json.loads(json.dumps(d)) == d
    assert AnalysisSpec.from_dict(d) == spec
    with pytest.raises(ConfigError, match="'vendi_order'"):
        AnalysisSpec.from_dict({**d, "vendi_order": 2})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_proposers", 0),
        ("aggregator", "mean"),
        ("quality", "best"),
        ("vendi_tol", 2.0),
        ("vendi_q", -1),
        ("cov_type", "HC9"),
        ("ddof", -1),
        ("proposer_key", ()),
    ],
)
def test_spec_errors_name_the_argument_not_a_flag(field, value):
    with pytest.raises(ConfigError) as err:
        AnalysisSpec(**{field: value})
    assert "--" not in str(err.value)
    assert f"AnalysisSpec.{field}" in str(err.value)


def test_fit_defaults_are_the_spec_defaults():
    from qdanalysis.cli.fit import build_parser, build_spec

    assert build_spec(build_parser().parse_args([])) == AnalysisSpec()


def test_registry_and_user_table_checks():
    assert set(AGGREGATORS) == {"plurality_vote", "oracle", "llm"}
    with pytest.raises(ConfigError, match="expected one of"):
        get_aggregator("mean", pd.DataFrame())
    with pytest.raises(ConfigError, match="aggregator rows"):
        get_aggregator("llm", pd.DataFrame({"dataset": ["d"]}))
    bad = pd.DataFrame({"config_id": ["c"], "question_id": ["q"], "performance": [2.0]})
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        PerformanceTable(table=bad)
