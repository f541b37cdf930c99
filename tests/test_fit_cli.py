from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.cli.fit import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_file(tmp_path, outputs_small) -> Path:
    p = tmp_path / "gsm8k_small.jsonl"
    outputs_small.to_json(p, orient="records", lines=True)
    return p


def test_help_documents_every_option(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for opt in (
        "--outputs",
        "--out-dir",
        "--proposer-key",
        "--n-proposers",
        "--max-configs",
        "--seed",
        "--with-replacement",
        "--aggregator",
        "--vendi-order",
        "--embedding-model",
        "--device",
        "--cache-dir",
        "--cov-type",
        "--quality",
        "--ci",
        "--label",
    ):
        assert opt in out


def test_fit_writes_tables_figures_and_sidecars(small_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "--outputs",
            str(small_file),
            "--out-dir",
            str(out),
            "--max-configs",
            "60",
            "--no-progress",
            "-q",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "rereading/gsm8k" in printed
    assert "alpha" in printed
    qd = pd.read_csv(out / "qd_table.csv")
    assert len(qd) == 60
    for col in (
        "dataset",
        "config_id",
        "name",
        "proposers",
        "n_questions",
        "quality",
        "diversity",
        "performance",
    ):
        assert col in qd.columns
    coefs = pd.read_csv(out / "coefficients.csv")
    assert set(coefs["term"]) >= {"Intercept", "quality_z", "diversity_z"}
    for stem in ("qd_table", "coefficients", "fig_coefficients", "fig_qd_scatter"):
        side = json.loads((out / f"{stem}.json").read_text())
        assert side["parameters"]["vendi_q"] == 1.0
        assert side["parameters"]["embedding_model"].startswith("all-MiniLM-L6-v2@")
        assert side["parameters"]["cov_type"] == "nonrobust"
        assert side["inputs"][0]["sha256"]
        assert len(side["inputs"][0]["sha256"]) == 64
    for f in (
        "fig_coefficients.pdf",
        "fig_coefficients.png",
        "fig_qd_scatter.pdf",
        "fig_qd_scatter.png",
    ):
        assert (out / f).stat().st_size > 1000


def test_second_run_embeds_nothing(small_file, tmp_path, capsys):
    args = [
        "--outputs",
        str(small_file),
        "--out-dir",
        str(tmp_path / "o"),
        "--max-configs",
        "30",
        "--no-progress",
        "--no-figures",
        "-q",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "embedded 0 texts" in capsys.readouterr().out


def test_bad_input_gives_one_error_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dataset": "d", "question_id": "q"\n')
    out = tmp_path / "out"
    assert main(["--outputs", str(bad), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert "bad.jsonl, line 1" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_usage_error_exits_2(capsys):
    assert main(["--vendi-order", "minus"]) == 2
    assert "expected a number" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_on_shipped_data(shipped_cache_dir, tmp_path, monkeypatch):
    """The README's demo command on data/: >= 200 configurations per dataset, real fits."""
    out = tmp_path / "figures"
    env = {**os.environ, "QDANALYSIS_CACHE_DIR": str(shipped_cache_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "qdanalysis.fit", "--out-dir", str(out), "--no-progress"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded 0 texts" in proc.stdout  # everything came from the shared cache
    qd = pd.read_csv(out / "qd_table.csv")
    counts = qd.groupby("dataset").size()
    assert len(counts) == 3
    assert (counts >= 200).all()
    coefs = pd.read_csv(out / "coefficients.csv")
    a = coefs[coefs["term"] == "quality_z"].set_index("dataset")
    assert (a["p_value"] < 0.001).all()  # quality matters on every shipped dataset
    assert (a["r2"] > 0.2).all()


@pytest.mark.slow
def test_fresh_checkout_paths(tmp_path):
    """No argument: reads data/ relative to the working directory, writes figures/."""
    work = tmp_path / "w"
    (work / "data").mkdir(parents=True)
    src = REPO / "data" / "rereading_csqa.jsonl.gz"
    shutil.copy(src, work / "data" / src.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qdanalysis.fit",
            "--no-progress",
            "--max-configs",
            "40",
            "--no-figures",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "figures" / "qd_table.csv").exists()


def test_library_error_names_the_argument_and_fit_adds_its_flag(tmp_path, outputs_small, capsys):
    p = tmp_path / "no_keys.jsonl"
    outputs_small.assign(answer_key=None).to_json(p, orient="records", lines=True)
    args = ["--outputs", str(p), "--aggregator", "plurality", "--max-configs", "10"]
    assert main([*args, "--no-progress", "--no-figures", "--out-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "use aggregator='oracle'" in err  # the library's words
    assert err.endswith("(fit options: --aggregator, --performance)")  # the CLI's addition


def test_fit_writes_the_pair_table_and_with_report_the_page(outputs_small, tmp_path, capsys):
    src = tmp_path / "gsm8k_small_one_missing.jsonl"
    outputs_small.iloc[1:].to_json(src, orient="records", lines=True)  # one slot output missing
    out = tmp_path / "out"
    args = ["--outputs", str(src), "--out-dir", str(out), "--max-configs", "20"]
    assert main([*args, "--no-figures", "--no-progress", "-q", "--report"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    warned = [w[len("warning: ") :] for w in captured.err.splitlines() if w.startswith("warning")]
    assert any("lack an output for some slot" in w for w in warned)
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert list(pairs.columns) == [
        "dataset",
        "config_id",
        "question_id",
        "quality",
        "diversity",
        "performance",
        "coverage",
        "length_chars",
    ]
    qd = pd.read_csv(out / "qd_table.csv")
    mean = pairs.groupby("config_id")["performance"].mean() * 100
    assert (mean[qd["config_id"]].to_numpy() == qd["performance"].to_numpy()).all()
    assert json.loads((out / "pairs.json").read_text())["artifacts"] == ["pairs.parquet"]
    page = out / "report.html"
    assert f"wrote {page}" in printed
    assert "pairs.parquet" in page.read_text(encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    overview = text.split('id="qd-overview">', 1)[1].split("</script>", 1)[0]
    assert set(warned) <= set(json.loads(overview)["warnings"])  # the fit's warnings, shown
    side = json.loads((out / "report.json").read_text())
    assert side["artifacts"] == ["report.html"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".staging")]


def test_a_failing_report_fails_fit_and_leaves_no_page(small_file, tmp_path, capsys, monkeypatch):
    from qdanalysis.analysis import report

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "_write_sidecar", boom)
    out = tmp_path / "out"
    args = ["--outputs", str(small_file), "--out-dir", str(out), "--max-configs", "20"]
    assert main([*args, "--no-figures", "--no-progress", "-q", "--report"]) == 1
    assert "disk full" in capsys.readouterr().err
    assert (out / "qd_table.csv").is_file()  # the tables were published before the page
    assert not list(out.glob("report*"))
    assert not list(out.glob(".staging*"))
