"""Paper-ready output: LaTeX escaping and compilation, significant digits, labelled figures that
state n, aggregator, proposers and interval method, and the paper's rows paired with their
dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import pytest

from qdanalysis.analysis.export import (
    LATEX_ESCAPES,
    Provenance,
    format_number,
    latex_coefficient_table,
    latex_escape,
    save_table,
)
from qdanalysis.analysis.paper import paper_match, paper_rows
from qdanalysis.analysis.regression import format_p
from qdanalysis.errors import QDAnalysisWarning

mpl.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
SPECIALS = "&%$#_{}~^\\"
NASTY = "a&b%c$d#e_f{g}h~i^j\\k<l>m"


def test_every_special_character_is_escaped():
    out = latex_escape(NASTY)
    for ch in SPECIALS:
        assert ch in LATEX_ESCAPES
    # Remove the escapes; no bare special character may be left.
    rest = out
    for esc in sorted(LATEX_ESCAPES.values(), key=len, reverse=True):
        rest = rest.replace(esc, "")
    assert not set(rest) & set(SPECIALS + "<>")
    # One pass: the backslash's escape is not itself escaped again.
    assert latex_escape("\\") == r"\textbackslash{}"
    assert latex_escape("~") == r"\textasciitilde{}"


def test_significant_digits_never_print_zero():
    assert format_number(7.99e-112) == "7.99e-112"
    assert format_number(0.0219059) == "0.02191"
    assert format_p(7.99e-112) == "< 0.001"
    assert format_p(0.0381234) == "0.0381"
    df = pd.DataFrame(
        {"term": ["x_z"], "estimate": [1.5e-5], "p_value": [0.005], "p_floor": [True]}
    )
    from qdanalysis.analysis.export import _latex_booktabs, _markdown

    md = _markdown(df)
    assert "1.5e-05" in md
    assert "< 0.005" in md
    assert "0.000" not in md
    assert r"\textless{} 0.005" in _latex_booktabs(df)


def _coefs():
    rows = []
    for ds, a, b in (("cruxeval-i/x_y", 0.68, -0.02), ("rereading/gsm8k", 6.1, 3.2)):
        for term, e in (("Intercept", 50.0), ("quality_z", a), ("diversity_z", b)):
            rows.append({"dataset": ds, "term": term, "estimate": e, "ci_low": e - 0.5})
        rows.append({"dataset": ds, "term": "quality_z - diversity_z", "estimate": a - b})
    df = pd.DataFrame(rows)
    df["ci_low"] = df["estimate"] - 0.5
    df["ci_high"] = df["estimate"] + 0.5
    return df.assign(n_obs=210, r2=0.506)


def _latex_doc(tmp_path: Path) -> Path:
    table = latex_coefficient_table(
        _coefs(),
        caption="Settings: " + NASTY + " α − β ² ×",
        labels={"rereading/gsm8k": "GSM8K & 50% ~ #1"},
        reference=paper_rows(["cruxeval-i/x_y", "rereading/gsm8k"]),
    )
    generic = pd.DataFrame({"col_a": [NASTY], "p_value": [1e-9], "x": [0.000012]})
    save_table(generic, "t", out_dir=tmp_path, formats=["tex"], provenance=Provenance())
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"{table}\n\\input{{t.tex}}\n\\end{{document}}\n",
        encoding="utf-8",
    )
    return doc


def test_latex_table_pairs_paper_rows_and_escapes(tmp_path):
    text = _latex_doc(tmp_path).read_text()
    assert r"GSM8K \& 50\% \textasciitilde{} \#1" in text
    assert r"cruxeval-i/x\_y" in text
    assert r"\quad CRUX (paper, Table 4)" in text
    # The paper row follows its dataset's row, and GSM8K has none.
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(r"cruxeval-i/x\_y"))
    assert "CRUX (paper" in lines[i + 1]
    assert text.count("paper, Table 4") == 1
    assert "$-$0.52" in text  # minus signs in math, 3 significant digits


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine (pdflatex) installed")
def test_latex_tables_compile(tmp_path):
    doc = _latex_doc(tmp_path)
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_paper_rows_pair_only_matching_datasets():
    assert paper_match("CRUXEval-O") == "CRUX"
    assert paper_match("rereading/gsm8k") is None
    assert paper_match("hendrycks/math") == "MATH"
    rows = paper_rows(["cruxeval-i/x", "rereading/csqa"])
    assert set(rows["dataset"]) == {"cruxeval-i/x"}
    assert rows["estimate"].tolist() == [4.548, 1.421]
    assert paper_rows(["rereading/csqa"]).empty


def test_coefficient_figure_labels_rows_and_states_settings():
    import matplotlib.pyplot as plt

    from qdanalysis.analysis.plotting import coefficient_figure, dataset_labels, settings_note

    qd = pd.DataFrame(
        {
            "dataset": ["cruxeval-i/x_y"] * 3 + ["rereading/gsm8k"] * 2,
            "n_questions": [300, 299, 300, 150, 150],
            "aggregator": "plurality_vote",
            "n_proposers": 6,
        }
    )
    labels = dataset_labels(qd, {"rereading/gsm8k": "GSM8K"})
    note = settings_note(qd, ci="cluster")
    fig = coefficient_figure(
        _coefs(),
        reference=paper_rows(["cruxeval-i/x_y", "rereading/gsm8k"]),
        group_labels=labels,
        ci_label="95% CI: question-clustered (CR1)",
        note=note,
    )
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_yticklabels()][::-1]  # top to bottom
    assert ticks == [
        "cruxeval-i/x_y\nn = 3 configs × 300 questions",
        "CRUX (paper, Table 4)",
        "GSM8K\nn = 2 configs × 150 questions",
    ]
    assert "question-clustered" in ax.get_xlabel()
    title = fig._suptitle.get_text()
    assert "aggregator: plurality_vote" in title
    assert "6 proposers" in title
    assert "question-clustered" in title
    plt.close(fig)


@pytest.mark.slow
def test_fit_cli_ci_cluster_labels_and_latex(tmp_path, monkeypatch, capsys):
    from qdanalysis.cli.fit import main

    monkeypatch.setenv(
        "QDANALYSIS_CACHE_DIR", os.environ.get("QDANALYSIS_CACHE_DIR", str(ROOT / "data/cache"))
    )
    args = [
        "--outputs",
        str(ROOT / "data/cruxeval_i_codellama7b_samples.jsonl.gz"),
        "--max-configs",
        "60",
        "--ci",
        "cluster",
        "--label",
        "cruxeval-i/codellama-7b-samples=CRUXEval-I & #1",
        "--format",
        "csv",
        "tex",
        "--out-dir",
        str(tmp_path),
        "--no-progress",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QDAnalysisWarning)
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "question-clustered" in out
    assert "pair-level model" in out
    coefs = pd.read_csv(tmp_path / "coefficients.csv")
    unc = pd.read_csv(tmp_path / "uncertainty.csv")
    cl = unc[(unc["method"] == "question_cluster") & (unc["term"] == "quality_z")]
    a = coefs[coefs["term"] == "quality_z"]
    assert a["std_error"].iloc[0] == pytest.approx(cl["std_error"].iloc[0])
    assert (coefs["ci"] == "cluster").all()
    assert {"estimate_raw", "ci_low_raw", "ci_high_raw", "unit_raw"} <= set(coefs.columns)
    assert set(unc["method"]) == {"nonrobust", "HC3", "question_cluster"}
    pm = pd.read_csv(tmp_path / "pair_model.csv")
    assert set(pm["term"]) == {"quality_z", "diversity_z", "quality_z - diversity_z"}
    tex = (tmp_path / "coefficients_paper.tex").read_text()
    assert r"CRUXEval-I \& \#1" in tex
    assert "CRUX (paper, Table 4)" in tex
    side = json.loads((tmp_path / "coefficients_paper.json").read_text())
    assert side["parameters"]["labels"] == {"cruxeval-i/codellama-7b-samples": "CRUXEval-I & #1"}
    assert side["parameters"]["ci"] == "cluster"
    assert "G - 1" in side["parameters"]["p_value_convention"]
    assert (tmp_path / "pair_model.json").is_file()
