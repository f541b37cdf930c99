"""Error correlation, effective proposers, coverage, selection loss, output length and the
ceiling warning: each against a hand computation on a tiny table and on the shipped data."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.aggregators import Oracle
from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
from qdanalysis.analysis.qdtable import (
    build_qd_table,
    ceiling_warnings,
    effective_proposers,
    error_correlation,
)
from qdanalysis.analysis.sensitivity import HashingEmbedder, measure_table, sensitivity_table
from qdanalysis.configs import ConfigSpec, ProposerSlot, generate_configs
from qdanalysis.errors import DataWarning, QDAnalysisWarning, StatisticalWarning
from qdanalysis.outputs import add_proposer_column, load_outputs

ROOT = Path(__file__).resolve().parents[2]
GSM8K = "rereading/gsm8k"
CRUX = "cruxeval-i/codellama-7b-samples"

#: Per model, whether each of six questions is answered correctly (C is always right, D errs
#: exactly as A does, E is always right too).
TOY = {
    "A": [1, 1, 0, 0, 1, 0],
    "B": [1, 0, 0, 1, 1, 0],
    "C": [1, 1, 1, 1, 1, 1],
    "D": [1, 1, 0, 0, 1, 0],
    "E": [1, 1, 1, 1, 1, 1],
}
TOY_CHARS = {"A": 10, "B": 20, "C": 30, "D": 40, "E": 50}


def _toy_outputs() -> pd.DataFrame:
    """A hand-built outputs table: wrong answers differ per model, so votes can tie."""
    rows = []
    for m, col in TOY.items():
        for t, c in enumerate(col):
            rows.append(
                {
                    "dataset": "toy",
                    "question_id": f"q{t}",
                    "model": m,
                    "sample_index": 0,
                    "output": m.lower() * TOY_CHARS[m],
                    "answer_key": "right" if c else f"wrong-{m}",
                    "correct": float(c),
                }
            )
    return add_proposer_column(pd.DataFrame(rows))


def _spec(*models: str) -> ConfigSpec:
    return ConfigSpec(
        method="mixed_moa", proposers=tuple(ProposerSlot(model=m, sample_index=0) for m in models)
    )


@pytest.fixture(scope="module")
def toy_table() -> pd.DataFrame:
    specs = {k: _spec(*k) for k in ("ABC", "AB", "AD", "AA", "CE", "A")}
    qd, _ = build_qd_table(_toy_outputs(), {"toy": list(specs.values())}, None)
    ids = {s.config_id: k for k, s in specs.items()}
    return qd.assign(key=qd["config_id"].map(ids)).set_index("key")


def test_toy_error_correlation_and_n_eff_by_hand(toy_table):
    e = {m: 1.0 - np.array(c, dtype=float) for m, c in TOY.items()}
    r_ab = np.corrcoef(e["A"], e["B"])[0, 1]
    assert r_ab == pytest.approx(1 / 3)  # by hand: covariance 0.5 / variance 1.5
    t = toy_table
    # C never errs: its pairs have no correlation and are left out of the mean.
    assert t.loc["ABC", "error_corr"] == pytest.approx(r_ab)
    assert t.loc["ABC", "n_eff"] == pytest.approx(3 / (1 + 2 * r_ab))
    assert t.loc["AB", "error_corr"] == pytest.approx(r_ab)
    assert t.loc["AB", "n_eff"] == pytest.approx(2 / (1 + r_ab))
    # Identical errors: one effective proposer.
    assert t.loc["AD", "error_corr"] == pytest.approx(1.0)
    assert t.loc["AD", "n_eff"] == pytest.approx(1.0)
    # One sample in two slots (sampling with replacement): the same errors, so rho = 1 too.
    assert t.loc["AA", "error_corr"] == pytest.approx(1.0)
    assert t.loc["AA", "n_eff"] == pytest.approx(1.0)
    assert t.loc["AA", "coverage"] == pytest.approx(100 * np.mean(TOY["A"]))
    # No slot errs: undefined; one slot: one proposer whatever rho.
    assert np.isnan(t.loc["CE", "error_corr"])
    assert np.isnan(t.loc["CE", "n_eff"])
    assert np.isnan(t.loc["A", "error_corr"])
    assert t.loc["A", "n_eff"] == 1.0


def test_toy_coverage_selection_loss_and_length_by_hand(toy_table):
    t = toy_table
    # AB: some slot right on q0, q1, q3, q4; the vote scores 1, 1/2, 0, 1/2, 1, 0.
    assert t.loc["AB", "coverage"] == pytest.approx(100 * 4 / 6)
    assert t.loc["AB", "performance"] == pytest.approx(100 * 3 / 6)
    assert t.loc["AB", "selection_loss"] == pytest.approx(100 * 1 / 6)
    # ABC: C always right; three-way ties on q2 and q5 score 1/3.
    assert t.loc["ABC", "coverage"] == pytest.approx(100.0)
    assert t.loc["ABC", "performance"] == pytest.approx(100 * (4 + 2 / 3) / 6)
    assert t.loc["ABC", "selection_loss"] == pytest.approx(100 - 100 * (4 + 2 / 3) / 6)
    assert t.loc["ABC", "length_chars"] == pytest.approx((10 + 20 + 30) / 3)
    assert t.loc["AD", "length_chars"] == pytest.approx(25.0)


def test_error_correlation_is_the_mean_of_pairwise_correlations_and_n_eff_n_when_independent():
    rng = np.random.default_rng(7)
    n, q = 6, 4000
    correct = (rng.random((1, q, n)) < 0.6).astype(float)
    keep = np.ones((1, q), dtype=bool)
    rho = error_correlation(correct, keep)[0]
    direct = np.corrcoef((1 - correct[0]).T)[np.triu_indices(n, 1)].mean()
    assert rho == pytest.approx(direct, abs=1e-12)
    assert abs(rho) < 0.02
    assert effective_proposers(np.array([rho]), np.array([n]))[0] == pytest.approx(n, rel=0.1)
    # Every slot a copy of the first: rho = 1, one effective proposer.
    same = np.repeat(correct[:, :, :1], n, axis=2)
    assert error_correlation(same, keep)[0] == pytest.approx(1.0)
    assert effective_proposers(error_correlation(same, keep), np.array([n]))[0] == pytest.approx(1)
    # Dropped questions are left out: the correlation over the kept ones only.
    keep2 = keep.copy()
    keep2[0, ::2] = False
    half = np.corrcoef((1 - correct[0, 1::2]).T)[np.triu_indices(n, 1)].mean()
    assert error_correlation(correct, keep2)[0] == pytest.approx(half, abs=1e-12)


def test_n_eff_of_anticorrelated_errors_exceeds_n():
    assert effective_proposers(np.array([-1.0]), np.array([2]))[0] == np.inf
    assert effective_proposers(np.array([-0.1]), np.array([3]))[0] == pytest.approx(3 / 0.8)


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return add_proposer_column(load_outputs(sorted((ROOT / "data").glob("*.jsonl.gz"))))


def _qd(rows: pd.DataFrame, ds: str, *, n: int = 6, aggregator=None, **kw):
    g = rows[rows["dataset"] == ds]
    cfgs = generate_configs(g, n_proposers=n, max_configs=300, seed=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return (*build_qd_table(g, {ds: cfgs}, None, aggregator=aggregator), cfgs)


def _raw_measures(rows: pd.DataFrame, spec: ConfigSpec) -> dict[str, float]:
    """Coverage, rho and length of one configuration from the raw rows, one question at a time."""
    lookup = {(r.question_id, r.model, r.sample_index): r for r in rows.itertuples()}
    slots = []
    for qid in sorted(rows["question_id"].unique()):
        got = [lookup.get((qid, s.model, s.sample_index)) for s in spec.proposers]
        if all(r is not None for r in got):
            slots.append(got)
    c = np.array([[r.correct for r in s] for s in slots])
    err = 1 - c
    varies = err.max(axis=0) > err.min(axis=0)
    rs = [
        np.corrcoef(err[:, i], err[:, j])[0, 1]
        for i, j in itertools.combinations(range(c.shape[1]), 2)
        if varies[i] and varies[j]
    ]
    return {
        "coverage": 100 * float(np.mean([max(r.correct for r in s) for s in slots])),
        "error_corr": float(np.mean(rs)) if rs else float("nan"),
        "length_chars": float(np.mean([np.mean([len(r.output) for r in s]) for s in slots])),
    }


@pytest.mark.parametrize("ds", [GSM8K, CRUX])
def test_shipped_measures_recomputed_from_raw_rows(shipped, ds):
    qd, pairs, cfgs = _qd(shipped, ds)
    rows = shipped[shipped["dataset"] == ds]
    t = qd.set_index("config_id")
    for spec in cfgs[:6]:
        raw = _raw_measures(rows, spec)
        for col, want in raw.items():
            assert t.loc[spec.config_id, col] == pytest.approx(want, abs=1e-9), col
        n = spec.n_proposers
        assert t.loc[spec.config_id, "n_eff"] == pytest.approx(
            n / (1 + (n - 1) * raw["error_corr"])
        )
    assert len(pairs) == qd["n_questions"].sum()
    assert (qd["selection_loss"] >= -1e-9).all()  # a vote only picks among the slots' answers


def test_coverage_is_the_oracle(shipped):
    qd_vote, pairs_vote, _ = _qd(shipped, GSM8K)
    qd_oracle, pairs_oracle, _ = _qd(shipped, GSM8K, aggregator=Oracle())
    np.testing.assert_array_equal(qd_vote["coverage"], qd_oracle["performance"])
    np.testing.assert_array_equal(pairs_vote["coverage"], pairs_oracle["performance"])
    np.testing.assert_array_equal(qd_oracle["selection_loss"], 0.0)
    # The existing numbers do not move: quality and performance of the vote are as before.
    assert (qd_vote["coverage"] >= qd_vote["performance"]).all()


def test_ceiling_warning_fires_at_the_ceiling_and_on_flat_performance(shipped):
    # GSM8K scored by the oracle (any of six slots right) sits at the ceiling.
    qd, _, _ = _qd(shipped, GSM8K, aggregator=Oracle())
    with pytest.warns(StatisticalWarning, match="near the ceiling"):
        msgs = ceiling_warnings(qd)
    assert len(msgs) == 1
    assert "rereading/gsm8k" in msgs[0]
    assert "β" in msgs[0]
    # One strong model's four prompts: about 94 % and within half a point of each other.
    mini = shipped[shipped["model"] == "gpt-4o-mini-2024-07-18"]
    qd, _, _ = _qd(mini, GSM8K, n=3)
    assert qd["performance"].std() < 1
    assert "barely varies" in ceiling_warnings(qd, warn=False)[0]


def test_ceiling_warning_on_the_shipped_vote_tables(shipped):
    """Measured on the shipped data with the plurality vote (the defaults of ``make demo``)."""
    gsm, _, _ = _qd(shipped, GSM8K)  # mean 90.0, max 95.3, SD 4.2: not at the ceiling
    assert ceiling_warnings(gsm, warn=False) == []
    crux, _, _ = _qd(shipped, CRUX)  # far from the ceiling, but an SD of 0.98 points
    msgs = ceiling_warnings(crux, warn=False)
    assert len(msgs) == 1
    assert "near the ceiling" not in msgs[0]
    assert "barely varies" in msgs[0]
    csqa, _, _ = _qd(shipped, "rereading/csqa")
    assert ceiling_warnings(csqa, warn=False) == []


def test_analyze_warns_and_records_the_ceiling(shipped):
    mini = shipped[
        (shipped["dataset"] == GSM8K) & (shipped["model"] == "gpt-4o-mini-2024-07-18")
    ].drop(columns="proposer")
    spec = AnalysisSpec(n_proposers=2, aggregator="oracle")  # 6 pairs of the 4 prompts
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", QDAnalysisWarning)
        res = analyze(mini, spec, embedder=HashingEmbedder(n_features=64), cache=False)
    stat = [str(w.message) for w in rec if issubclass(w.category, StatisticalWarning)]
    ceiling = [m for m in stat if "near the ceiling" in m]
    assert ceiling
    assert res.parameters["ceiling_warnings"] == ceiling


def test_measure_table_carries_the_qd_columns_and_the_length_row(small_analysis, small_outputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QDAnalysisWarning)
        m = measure_table(small_analysis, small_outputs, pooled=False)
        sens = sensitivity_table(m, spec=small_analysis.spec)
    qd = small_analysis.qd_table.set_index(["dataset", "config_id"])
    mi = m.set_index(["dataset", "config_id"]).loc[qd.index]
    for col in ("coverage", "selection_loss", "error_corr", "length_chars"):
        np.testing.assert_allclose(mi[col], qd[col], rtol=0, atol=1e-9)
    np.testing.assert_allclose(mi["diversity_n_eff"], qd["n_eff"], rtol=0, atol=1e-9)
    assert set(sens.loc[sens["diversity_measure"] == "diversity_n_eff", "embedding"]) == {
        "(correctness)"
    }
    sm = pytest.importorskip("statsmodels.api")
    for ds, g in m.groupby("dataset"):
        row = sens[(sens["dataset"] == ds) & (sens["covariate"] == "length_chars")].iloc[0]
        base = sens[(sens["dataset"] == ds) & sens["is_default"]].iloc[0]
        cols = ["quality_mean", "diversity_vendi_q1", "length_chars"]
        z = (g[cols] - g[cols].mean()) / g[cols].std(ddof=1)
        fit = sm.OLS(g["performance"].to_numpy(), sm.add_constant(z.to_numpy())).fit()
        assert row["alpha"] == pytest.approx(fit.params[1])
        assert row["beta"] == pytest.approx(fit.params[2])
        assert row["gamma"] == pytest.approx(fit.params[3])
        assert row["gamma_se"] == pytest.approx(fit.bse[3])
        assert row["beta_shift"] == pytest.approx(row["beta"] - base["beta"])
        assert not row["is_default"]
        assert not row["is_paper"]
        assert row["r2"] == pytest.approx(fit.rsquared)
        r = g[cols].corr()["length_chars"]
        assert row["corr_covariate_quality"] == pytest.approx(r["quality_mean"])
        assert row["corr_covariate_diversity"] == pytest.approx(r["diversity_vendi_q1"])
        assert row["collinear"] == (bool(base["collinear"]) or r.iloc[:2].abs().max() > 0.9)
