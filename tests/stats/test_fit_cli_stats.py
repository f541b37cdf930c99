"""The fit CLI's statistics options, end to end on the shipped CRUXEval-I outputs (slow)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.errors import QDAnalysisWarning

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fit_writes_bootstrap_and_latex_tables(tmp_path, monkeypatch, capsys):
    from qdanalysis.cli.fit import main

    monkeypatch.setenv(
        "QDANALYSIS_CACHE_DIR", os.environ.get("QDANALYSIS_CACHE_DIR", str(ROOT / "data/cache"))
    )
    args = [
        "--outputs",
        str(ROOT / "data/cruxeval_i_codellama7b_samples.jsonl.gz"),
        "--max-configs",
        "60",
        "--bootstrap",
        "50",
        "--format",
        "csv",
        "md",
        "tex",
        "--sensitivity",
        "--out-dir",
        str(tmp_path),
        "--no-progress",
    ]
    with warnings.catch_warnings():
        # Data and statistical notes (truncation, small n) are reported, not failures here.
        warnings.simplefilter("ignore", QDAnalysisWarning)
        assert main(args) == 0
    unc = pd.read_csv(tmp_path / "uncertainty.csv")
    assert set(unc["method"]) == {"nonrobust", "HC3", "question_cluster", "bootstrap"}
    boot = unc[unc["method"] == "bootstrap"]
    assert (boot["p_value"] >= 1 / 50).all()  # never 0: floored at 1/B
    tex = (tmp_path / "uncertainty.tex").read_text()
    assert "\\toprule" in tex
    assert "\\bottomrule" in tex
    assert (tmp_path / "sensitivity.md").is_file()
    for stem in ("fig_uncertainty", "fig_residuals", "fig_coefficients"):
        assert (tmp_path / f"{stem}.pdf").is_file()
        assert (tmp_path / f"{stem}.json").is_file()
    assert "wrote" in capsys.readouterr().out
