"""Win rate and LC win rate of judge-scored outputs through alpaca-eval's own code, offline.

Data: ``data/judge/`` holds the real AlpacaEval 2.0 annotations of 8 models (805 instructions
each, the ``weighted_alpaca_eval_gpt4_turbo`` judge against ``gpt4_1106_preview``), the
baseline's outputs, and the leaderboard's win rate and LC win rate of each model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis import winrate
from qdanalysis.analysis.methods import single_model_table
from qdanalysis.errors import DataError, MissingDependencyError
from qdanalysis.outputs import load_outputs

try:
    winrate._alpaca_eval_metrics()
except MissingDependencyError as exc:
    pytest.skip(f"the judge extra is not installed: {exc}", allow_module_level=True)

JUDGE = Path(__file__).resolve().parents[2] / "data" / "judge"
MANIFEST = json.loads((JUDGE / "alpacaeval2_judge_8models.manifest.json").read_text())["models"]


@pytest.fixture(scope="module")
def judged() -> pd.DataFrame:
    return load_outputs([JUDGE / "alpacaeval2_judge_8models.jsonl.gz"])


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    return pd.read_json(JUDGE / "alpacaeval2_reference_outputs.jsonl.gz", lines=True, dtype=False)


def _one(judged: pd.DataFrame, model: str) -> pd.DataFrame:
    return judged[judged["model"] == model].reset_index(drop=True)


def _glm_reference_dir() -> Path | None:
    """Where the GLM's hub file is, if anywhere here: $QDANALYSIS_ALPACA_EVAL_DIR, data/judge/,
    else the local Hugging Face cache (read only)."""
    for folder in (os.environ.get("QDANALYSIS_ALPACA_EVAL_DIR"), JUDGE):
        if folder and (Path(folder) / winrate.GLM_REFERENCE_FILE).is_file():
            return Path(folder)
    try:
        return winrate.glm_reference_path(None).parent
    except DataError:
        return None


def _package_leaderboard() -> pd.DataFrame:
    """The AlpacaEval 2.0 leaderboard that alpaca-eval ships (win rate and its standard error)."""
    import alpaca_eval

    path = (
        Path(alpaca_eval.__file__).parent
        / "leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
    )
    return pd.read_csv(path, index_col=0)


def test_win_rate_equals_the_leaderboard_for_all_8_models(judged, baseline):
    table = winrate.win_rate_table(judged, baseline, length_controlled=False)
    board = _package_leaderboard()
    assert len(table) == 8
    for row in table.itertuples():
        published = float(MANIFEST[row.model]["leaderboard_win_rate"])
        assert row.win_rate == pytest.approx(published, abs=0.01), row.model
        assert row.win_rate_se == pytest.approx(board.loc[row.model, "standard_error"], abs=1e-3)
        assert row.n == 805
        assert np.isnan(row.lc_win_rate)


@pytest.mark.skipif(
    _glm_reference_dir() is None,
    reason=f"the LC GLM's {winrate.GLM_REFERENCE_FILE} (tatsu-lab/alpaca_eval hub dataset) is "
    "not here; put it in data/judge/ or set QDANALYSIS_ALPACA_EVAL_DIR to its folder",
)
def test_lc_win_rate_equals_the_leaderboard_for_all_8_models(judged, baseline):
    table = winrate.win_rate_table(judged, baseline, reference_dir=_glm_reference_dir())
    for row in table.itertuples():
        published = float(MANIFEST[row.model]["leaderboard_lc_win_rate"])
        assert row.lc_win_rate == pytest.approx(published, abs=0.1), row.model
        assert row.lc_win_rate_se == pytest.approx(
            _package_leaderboard().loc[row.model, "lc_standard_error"], abs=0.05
        )
        assert row.glm == "length_controlled_v1"


def _shape_only_reference(folder: Path) -> Path:
    """A df_gamed.csv with the hub file's columns and no gamed rows; difficulty unused below."""
    pd.DataFrame({"model": "none", "index": np.arange(805), "instruction_difficulty": 0.0}).to_csv(
        folder / winrate.GLM_REFERENCE_FILE, index=False
    )
    return folder


def _tree_state(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def test_package_glm_runs_offline_and_writes_nothing(judged, baseline, tmp_path, monkeypatch):
    # The package's 'minimal' GLM (length term only) reads the hub file's instruction index but
    # not its difficulty values, so it runs on the real annotations without the hub file.
    import alpaca_eval
    import sklearn

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    package = Path(alpaca_eval.__file__).parent
    before = _tree_state(package)
    ref = _shape_only_reference(tmp_path)
    concise = winrate.lc_win_rate(
        _one(judged, "Mixtral-8x7B-Instruct-v0.1_concise"),
        baseline,
        reference_dir=ref,
        glm_name="length_controlled_minimal",
    )
    assert _tree_state(package) == before
    assert not sklearn.get_config()["enable_metadata_routing"]
    assert concise.glm == "length_controlled_minimal"
    assert concise.win_rate == pytest.approx(13.744, abs=0.01)
    # Its outputs are much shorter than the baseline's: controlling for length raises its score.
    assert concise.lc_win_rate > concise.win_rate + 3
    assert np.isfinite(concise.lc_win_rate_se)


def _stand_in_reference(judged, baseline, folder: Path) -> Path:
    """A df_gamed.csv laid out as the hub's (gamed-baseline rows, featurised as the package
    does), filled from two real models' annotations with zero difficulty: it exercises the
    leaderboard GLM's code path on the installed pandas/sklearn, not its numbers."""
    parts = []
    for model in ("Mixtral-8x7B-Instruct-v0.1_concise", "FuseChat-Qwen-2.5-7B-Instruct"):
        a = winrate.judge_annotations(_one(judged, model), baseline).reset_index(names="index")
        dl = a["output_1"].str.len() - a["output_2"].str.len()
        parts.append(
            pd.DataFrame(
                {
                    "model": model,
                    "index": a["index"],
                    "preference": a["preference"] - 1,
                    "std_delta_len": dl / dl.std(),
                    "instruction_difficulty": 0.0,
                    "not_gamed_baseline": False,
                }
            )
        )
    pd.concat(parts).to_csv(folder / winrate.GLM_REFERENCE_FILE, index=False)
    return folder


def test_leaderboard_glm_code_path_runs_on_the_installed_versions(judged, baseline, tmp_path):
    res = winrate.lc_win_rate(
        _one(judged, "claude-2"),
        baseline,
        reference_dir=_stand_in_reference(judged, baseline, tmp_path),
    )
    assert res.glm == "length_controlled_v1"
    assert np.isfinite(res.lc_win_rate)
    assert res.lc_win_rate > res.win_rate  # claude-2 writes shorter answers than the baseline
    assert res.lc_win_rate_se >= 0  # zero difficulty: one prediction for every instruction


def test_missing_glm_input_fails_before_any_fit_with_the_fix(judged, baseline, tmp_path):
    with pytest.raises(DataError, match=r"df_gamed\.csv.*hf download tatsu-lab/alpaca_eval"):
        winrate.lc_win_rate(_one(judged, "claude-2"), baseline, reference_dir=tmp_path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda g: g.iloc[:800], r"5 missing, e\.g\. \[800, 801, 802\]"),
        (lambda g: pd.concat([g, g.iloc[:2]]), r"2 duplicated"),
        (
            lambda g: g.assign(question_id=g["question_id"].str.replace("alpaca_eval/0", "x/900")),
            r"outside 0\.\.804",
        ),
    ],
)
def test_misaligned_outputs_fail_with_a_clear_error(judged, baseline, edit, match):
    # alpaca_eval issue #453: misaligned outputs give a NaN LC win rate without an error.
    with pytest.raises(DataError, match=match):
        winrate.lc_win_rate(edit(_one(judged, "claude-2")), baseline, length_controlled=False)


def test_missing_baseline_outputs_fail(judged, baseline):
    with pytest.raises(DataError, match="expected a baseline output for every question"):
        winrate.lc_win_rate(_one(judged, "claude-2"), baseline.iloc[1:], length_controlled=False)


def test_single_model_table_gains_win_rates_for_judged_data(judged, baseline):
    table = single_model_table(judged, baseline=baseline, length_controlled=False)
    assert {"win_rate", "win_rate_se", "lc_win_rate"} <= set(table.columns)
    row = table.set_index("proposer").loc["gpt-3.5-turbo-0301"]
    assert row["win_rate"] == pytest.approx(9.622, abs=0.01)
    # Without a baseline, the table is as before.
    assert "win_rate" not in single_model_table(judged).columns


def test_fit_judge_baseline_builds_win_rates_before_embedding(judged, tmp_path, monkeypatch):
    from qdanalysis.cli.fit import _win_rates, build_parser
    from qdanalysis.errors import DataWarning

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = _glm_reference_dir()
    args = build_parser().parse_args(
        ["--judge-baseline", str(JUDGE / "alpacaeval2_reference_outputs.jsonl.gz")]
        + (["--lc-reference", str(ref)] if ref is not None else [])
    )
    if ref is None:
        with pytest.warns(DataWarning, match="no LC win rate"):
            table = _win_rates(args, judged)
        assert table["lc_win_rate"].isna().all()
    else:
        table = _win_rates(args, judged)
    assert len(table) == 8
    assert table.set_index("proposer").loc["claude-2", "win_rate"] == pytest.approx(
        17.188, abs=0.01
    )


def test_fit_judge_baseline_misaligned_fails_fast_with_the_flag(tmp_path, capsys):
    from qdanalysis.cli.fit import main

    base = pd.read_json(JUDGE / "alpacaeval2_reference_outputs.jsonl.gz", lines=True, dtype=False)
    short = tmp_path / "baseline.jsonl"
    base.iloc[5:].to_json(short, orient="records", lines=True)
    rc = main(
        [
            "--outputs",
            str(JUDGE / "alpacaeval2_judge_8models.jsonl.gz"),
            "--judge-baseline",
            str(short),
            "--lc-reference",
            str(tmp_path),
            "--out-dir",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "expected a baseline output for every question" in err
    assert "--judge-baseline" in err
    assert not (tmp_path / "out").exists()
