"""Judge-scored outputs (continuous ``correct``, no answer keys): fail fast, or fit a user table.

The data are a slice of the real AlpacaEval 2 judge file (8 models x 805 instructions,
``correct`` a judge preference in [0, 1], no answer keys): its first 4 models (sorted by name) on
its first 30 instructions, lines kept verbatim.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qdanalysis._hashing import file_sha256
from qdanalysis.analysis import embeddings, pipeline
from qdanalysis.analysis.aggregators import PerformanceTable
from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
from qdanalysis.analysis.sensitivity import HashingEmbedder
from qdanalysis.cli.fit import main
from qdanalysis.configs import AggregatorSpec, configs_frame, generate_configs, type_letters
from qdanalysis.errors import ConfigError, DataError
from qdanalysis.outputs import add_proposer_column, load_outputs

JUDGED = Path(__file__).parent / "data" / "alpacaeval2_judge_4models_30q.jsonl.gz"
DATASET = "alpaca_eval2/weighted_gpt4_turbo"


@pytest.fixture(scope="module")
def judged() -> pd.DataFrame:
    return load_outputs([JUDGED])


def _slice(judged: pd.DataFrame, n_models: int, n_questions: int = 30) -> pd.DataFrame:
    models = sorted(judged["model"].unique())[:n_models]
    qids = sorted(judged["question_id"].unique(), key=lambda q: int(q.split("/")[1]))
    keep = judged["model"].isin(models) & judged["question_id"].isin(qids[:n_questions])
    return judged[keep].reset_index(drop=True)


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_json(path, orient="records", lines=True)
    return path


class _NoEmbedding:
    """An embedder that must not be called: the check comes before any embedding."""

    name = "must-not-embed"
    max_seq_length = None
    device = "cpu"

    def encode(self, texts):
        raise AssertionError("embedded before the aggregator was checked")


def test_fit_refuses_plurality_on_judge_scores_before_embedding(
    judged, tmp_path, capsys, monkeypatch
):
    src = _write(_slice(judged, 2), tmp_path / "judged.jsonl")

    def no_embed(*args, **kwargs):
        raise AssertionError("embedded before the aggregator was checked")

    monkeypatch.setattr(pipeline, "_embed", no_embed)
    args = ["--outputs", str(src), "--out-dir", str(tmp_path / "o"), "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"dataset {DATASET!r}: aggregator 'plurality_vote' cannot score it" in err
    assert "continuous in [" in err
    assert "no answer keys" in err
    assert "aggregator='llm'" in err
    assert "performance table" in err
    assert "use aggregator='oracle'" not in err  # not on continuous scores
    assert err.endswith("(fit options: --aggregator, --performance)")
    assert not (tmp_path / "o").exists()


def test_oracle_on_judge_scores_is_refused_as_no_accuracy(judged):
    with pytest.raises(ConfigError, match=r"expected a binary \(0/1\) correct; got") as exc:
        analyze(_slice(judged, 2), AnalysisSpec(aggregator="oracle"), embedder=_NoEmbedding())
    assert "not an ensemble accuracy" in str(exc.value)
    assert "aggregator 'oracle'" in str(exc.value)
    assert "performance=FILE" in str(exc.value)


def _stand_in_performance(rows: pd.DataFrame, spec: AnalysisSpec, path: Path) -> pd.DataFrame:
    """A performance file keyed by configuration name, for the configurations fit generates.

    The score of a (configuration, question) is the mean of its slots' judge scores: a
    stand-in for an aggregator scored elsewhere (e.g. a judged aggregated answer).
    """
    configs = generate_configs(
        add_proposer_column(rows, ["model"]),
        n_proposers=spec.n_proposers,
        max_configs=spec.max_configs,
        seed=spec.seed,
        with_replacement=spec.with_replacement,
        aggregator=AggregatorSpec(kind="plurality_vote"),
    )
    frame = configs_frame(configs, letters=type_letters(rows["model"].unique().tolist()))
    assert frame["name"].is_unique  # one sample per model: a name is one configuration
    score = rows.set_index(["question_id", "model"])["correct"]
    recs = [
        {
            "name": name,
            "question_id": q,
            "performance": float(np.mean([score[(q, t)] for t in c.types])),
        }
        for c, name in zip(configs, frame["name"], strict=True)
        for q in sorted(rows["question_id"].unique())
    ]
    table = pd.DataFrame(recs)
    table.to_csv(path, index=False)
    return table


def test_fit_with_a_performance_file_scores_by_it(judged, tmp_path, capsys, monkeypatch):
    rows = _slice(judged, 4)
    src = _write(rows, tmp_path / "judged.jsonl")
    perf_file = tmp_path / "performance.csv"
    flags = ["--n-proposers", "3", "--with-replacement"]
    spec = AnalysisSpec(n_proposers=3, with_replacement=True)
    table = _stand_in_performance(rows, spec, perf_file)
    # Model-free embeddings keep the test fast; the performance path does not depend on them.
    monkeypatch.setattr(
        embeddings, "SentenceTransformerEmbedder", lambda *a, **k: HashingEmbedder()
    )
    out = tmp_path / "out"
    args = ["--outputs", str(src), "--out-dir", str(out), "--performance", str(perf_file)]
    assert main([*args, *flags, "--no-progress", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "mean scores (×100), not accuracies (%)" in printed
    qd = pd.read_csv(out / "qd_table.csv")
    assert len(qd) == 20
    assert set(qd["aggregator"]) == {"user"}
    want = table.groupby("name")["performance"].mean() * 100
    np.testing.assert_allclose(qd["performance"], want[qd["name"]].to_numpy(), rtol=1e-12)
    coefs = pd.read_csv(out / "coefficients.csv")
    assert {"quality_z", "diversity_z"} <= set(coefs["term"])
    params = json.loads((out / "coefficients.json").read_text())["parameters"]
    assert json.loads((out / "qd_table.json").read_text())["parameters"]["performance"]
    assert params["performance"] == str(perf_file)
    assert params["performance_sha256"] == file_sha256(perf_file)
    assert params["score_scale"] == "continuous"


def test_performance_file_errors_name_file_line_and_column(tmp_path):
    p = tmp_path / "perf.csv"
    p.write_text("config_id,question_id,performance\nc1,q1,0.5\nc1,q2,1.5\n")
    with pytest.raises(DataError) as exc:
        PerformanceTable.from_file(p)
    assert (exc.value.path, exc.value.line, exc.value.column) == (str(p), 3, "performance")
    p.write_text("config,question_id,performance\nc1,q1,0.5\n")
    with pytest.raises(DataError, match="missing"):
        PerformanceTable.from_file(p)
    p.write_text("config_id,question_id,performance\nc1,q1,0.5\nc1,q1,0.5\n")
    with pytest.raises(DataError) as exc:
        PerformanceTable.from_file(p)
    assert exc.value.line == 3


def test_spec_records_the_performance_file_and_refuses_a_changed_one(tmp_path):
    p = tmp_path / "perf.csv"
    p.write_text("config_id,question_id,performance\nc1,q1,0.5\n")
    spec = AnalysisSpec(performance=str(p))
    assert spec.performance_sha256 == file_sha256(p)
    assert AnalysisSpec.from_dict(spec.to_dict()) == spec
    p.write_text("config_id,question_id,performance\nc1,q1,0.25\n")
    with pytest.raises(ConfigError, match="it changed since"):
        AnalysisSpec.from_dict(spec.to_dict())
    with pytest.raises(ConfigError, match="expected 'auto'"):
        AnalysisSpec(performance=str(p), aggregator="oracle")


def test_figures_of_continuous_scores_say_mean_score_not_percent():
    import matplotlib.pyplot as plt

    from qdanalysis.analysis.artifacts import _score_units

    fig, ax = plt.subplots()
    ax.set_xlabel("quality (%)")
    ax.set_ylabel("accuracy (%)")
    _score_units(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("quality (×100)", "mean score (×100)")
    plt.close(fig)
