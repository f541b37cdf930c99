"""What the report page embeds: the tables' numbers as written, per-question details, errors."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis._report_page import _json
from qdanalysis.analysis.report import build_report_data, read_fit_dir, write_report
from qdanalysis.cli.report import main
from qdanalysis.errors import ConfigError, DataError, DataWarning
from qdanalysis.outputs import load_outputs


def _embedded(page: Path, block: str = "qd-overview") -> dict:
    text = page.read_text(encoding="utf-8")
    m = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', text, re.S)
    assert m is not None, block
    return json.loads(m.group(1))


@pytest.mark.parametrize("which", ["run_fit", "vote_fit"])
def test_page_embeds_the_numbers_of_qd_table_and_coefficients(which, request, tmp_path):
    fit_dir = request.getfixturevalue(which)
    page = write_report(fit_dir, out=tmp_path / "r.html")
    ov = _embedded(page)
    qd = pd.read_csv(fit_dir / "qd_table.csv", dtype={"config_id": str})
    assert ov["configs"]["config_id"] == qd["config_id"].tolist()
    for col in ("quality", "diversity", "performance"):
        assert ov["configs"][col] == qd[col].tolist()  # exactly, never recomputed
    coefs = pd.read_csv(fit_dir / "coefficients.csv")
    got = {(r["dataset"], r["term"]): r for r in ov["coefficients"]}
    for r in coefs.itertuples(index=False):
        e = got[(r.dataset, r.term)]
        assert (e["estimate"], e["ci_low"], e["ci_high"]) == (r.estimate, r.ci_low, r.ci_high)
    assert {r["dataset"] for r in ov["paper"]} == {"MMLU", "CRUX", "MATH"}
    side = json.loads((fit_dir / "qd_table.json").read_text())
    assert ov["parameters"] == side["parameters"]
    assert ov["provenance"]["inputs"] == side["inputs"]


@pytest.mark.parametrize("which", ["run_fit", "vote_fit"])
def test_per_question_values_are_those_of_pairs_parquet(which, request):
    fit_dir = request.getfixturevalue(which)
    pairs = pd.read_parquet(fit_dir / "pairs.parquet")
    fit = read_fit_dir(fit_dir)
    data = build_report_data(fit)
    assert data.overview["details"] == {"available": True, "pairs": True}
    shown = []
    for i, row in fit.qd_table.iterrows():
        cfg, qids = data.chunks[f"c{i}"], data.chunks["p0"]["qids"]
        for k, qid in enumerate(qids):
            if cfg["performance"][k] is not None:
                vals = (cfg["quality"][k], cfg["diversity"][k], cfg["performance"][k])
                shown.append((row["dataset"], row["config_id"], qid, *vals))
    key = ["dataset", "config_id", "question_id"]
    pairs = pairs[[*key, "quality", "diversity", "performance"]]  # the measures the page shows
    got = pd.DataFrame(shown, columns=pairs.columns)
    want = pairs.astype({c: object for c in key}).sort_values(key, ignore_index=True)
    got = got.astype({c: object for c in key}).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


@pytest.mark.parametrize("which", ["run_fit", "vote_fit"])
def test_check_line_mean_of_pairs_performance_is_the_tables_t(which, request):
    fit = read_fit_dir(request.getfixturevalue(which))
    data = build_report_data(fit)
    for i, row in fit.qd_table.iterrows():
        t = [v for v in data.chunks[f"c{i}"]["performance"] if v is not None]
        assert len(t) == row["n_questions"]
        assert 100 * np.mean(t) == pytest.approx(row["performance"], abs=1e-9)


def test_fit_without_pairs_parquet_warns_and_shows_no_per_question_values(run_fit, tmp_path):
    d = tmp_path / "old-fit"
    shutil.copytree(run_fit, d)
    (d / "pairs.parquet").unlink()
    data = build_report_data(read_fit_dir(d), outputs=[run_fit.parent / "outputs.jsonl"])
    assert data.overview["details"] == {"available": True, "pairs": False}
    assert any("pairs.parquet is missing" in w for w in data.overview["warnings"])
    for key, chunk in data.chunks.items():
        if key.startswith("c"):
            assert {v for m in ("quality", "diversity", "performance") for v in chunk[m]} == {None}
            assert chunk["agg"]  # the texts are still shown


def test_run_store_details_show_slot_outputs_and_aggregator_rows(run_fit):
    fit = read_fit_dir(run_fit)
    data = build_report_data(fit)
    with pytest.warns(DataWarning, match="empty"):
        o = load_outputs([run_fit.parent / "outputs.jsonl"])
    i = int(np.flatnonzero((fit.qd_table["method"] == "self_moa_seq").to_numpy())[0])
    cid = fit.qd_table.at[i, "config_id"]
    cfg, pool = data.chunks[f"c{i}"], data.chunks["p0"]
    assert cfg["slots"] == [f"smollm2#{k}" for k in range(6)]
    q = 0
    qid = pool["qids"][q]
    row = o[(o.question_id == qid) & (o.model == "smollm2") & (o.sample_index == 3)]
    row = row[row.role == "proposer"].iloc[0]
    assert pool["slots"]["smollm2#3"][q] == [row.output, row.answer, row.correct]
    agg = o[(o.config_id == cid) & (o.question_id == qid)].sort_values("step")
    assert [s[2] for s in cfg["agg"][q]] == agg["output"].tolist()  # every step, in order
    finals = [s for s in cfg["agg"][q] if s[5]]
    assert len(finals) == 1
    assert finals[0][2] == agg["output"].iloc[-1]  # the registry's final row: the last step
    assert cfg["performance"][q] == agg["correct"].iloc[-1]
    usage = {(u["role"], u["model"]): u for u in data.overview["usage"]}
    p = o[(o.role == "proposer") & (o.model == "smollm2")]
    assert usage[("proposer", "smollm2")]["calls"] == len(p)
    assert usage[("proposer", "smollm2")]["completion_tokens"] == p["completion_tokens"].sum()
    assert any("empty" in w for w in data.overview["warnings"])  # what load_outputs warned
    assert any("only 7 configurations" in w for w in data.overview["warnings"])


def test_report_sidecar_records_its_inputs_and_the_fits_provenance(run_fit, tmp_path):
    page = write_report(run_fit, out=tmp_path / "r.html", argv=["x"])
    side = json.loads(page.with_suffix(".json").read_text())
    names = [Path(i["path"]).name for i in side["inputs"]]
    assert {"qd_table.csv", "coefficients.csv", "pairs.parquet", "outputs.jsonl"} <= set(names)
    assert all(i["sha256"] for i in side["inputs"])
    fit_side = json.loads((run_fit / "qd_table.json").read_text())
    assert side["parameters"]["fit_provenance"] == fit_side
    assert side["artifacts"] == ["r.html"]
    assert side["argv"] == ["x"]


def test_large_details_go_to_a_folder_beside_the_page(vote_fit, tmp_path):
    page = write_report(vote_fit, out=tmp_path / "big.html", max_inline_bytes=0)
    ov = _embedded(page)
    assert ov["details"]["dir"] == "big_files"
    assert 'id="chunk-' not in page.read_text(encoding="utf-8")
    files = sorted(p.name for p in (tmp_path / "big_files").iterdir())
    n = len(ov["configs"]["config_id"])
    assert files == sorted(["p0.js", *(f"c{i}.js" for i in range(n))])
    text = (tmp_path / "big_files" / "c0.js").read_text()
    assert text.startswith('qdChunk("c0",')
    assert text.rstrip().endswith(");")
    write_report(vote_fit, out=tmp_path / "big.html")  # small again: no stale folder left
    assert not (tmp_path / "big_files").exists()
    assert 'id="chunk-c0"' in (tmp_path / "big.html").read_text(encoding="utf-8")


def test_a_failing_report_leaves_no_files(vote_fit, tmp_path, monkeypatch):
    from qdanalysis.analysis import report

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "_write_sidecar", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(vote_fit, out=tmp_path / "r.html", max_inline_bytes=0)
    assert list(tmp_path.iterdir()) == []


def test_inline_page_has_no_external_scripts(vote_fit, tmp_path):
    text = write_report(vote_fit, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "Plotly" in text  # plotly.js inlined from the Python package


def test_json_in_the_page_cannot_close_its_script_element():
    text = _json({"output": "</script><script>alert(1)</script><!-- x", "n": 1.5})
    assert "<" not in text
    assert json.loads(text)["output"].startswith("</script>")


def test_nan_becomes_null():
    with pytest.raises(ValueError, match="JSON compliant"):
        _json({"x": math.nan})


def test_missing_outputs_file_is_a_warning_on_the_page(run_fit, tmp_path):
    d = tmp_path / "fit"
    shutil.copytree(run_fit, d)
    page = write_report(d)  # the outputs file is not beside this copy
    ov = _embedded(page)
    assert not ov["details"]["available"]
    assert any("was not found" in w for w in ov["warnings"])


def test_changed_outputs_file_is_refused(tmp_path, run_fit):
    d = tmp_path / "fit"
    shutil.copytree(run_fit, d)
    shutil.copy(run_fit.parent / "outputs.jsonl", d / "outputs.jsonl")
    with (d / "outputs.jsonl").open("a") as fh:
        fh.write("\n")
    with pytest.raises(DataError, match="content differs"):
        write_report(d)


def test_explicit_outputs_are_used(run_fit, tmp_path):
    d = tmp_path / "fit"
    shutil.copytree(run_fit, d)
    page = write_report(d, outputs=[run_fit.parent / "outputs.jsonl"])
    assert _embedded(page)["details"]["available"]


def test_report_of_the_shipped_study_reads_its_outputs_not_its_toml(tmp_path):
    # A study's fit names its TOML among its inputs; the report loads only outputs tables.
    study = Path(__file__).resolve().parents[2] / "data" / "runs" / "crux_qwen_smollm2"
    d = tmp_path / "fit"
    shutil.copytree(study / "fit", d)
    bare = _embedded(write_report(d, out=tmp_path / "bare.html"))  # the TOML is not loaded
    assert any("outputs.jsonl" in w and "was not found" in w for w in bare["warnings"])
    assert not any(".toml" in w for w in bare["warnings"])
    page = write_report(d, outputs=[study / "fit_outputs.jsonl.gz"])
    ov = _embedded(page)
    assert ov["details"]["available"]
    qd = pd.read_csv(d / "qd_table.csv", dtype={"config_id": str})
    assert len(ov["configs"]["config_id"]) == len(qd) >= 200


@pytest.mark.parametrize("layout", ["empty", "missing", "only_qd_table"])
def test_bad_input_gives_one_error_line_and_exit_1(layout, tmp_path, capsys, run_fit):
    d = tmp_path / "dir"
    if layout != "missing":
        d.mkdir()
    if layout == "only_qd_table":
        shutil.copy(run_fit / "qd_table.csv", d)
    assert main([str(d)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: report fit_dir: expected a fit or study output directory")
    assert not (d / "report.html").exists()


def test_library_error_names_the_argument(tmp_path):
    with pytest.raises(ConfigError, match="fit_dir"):
        read_fit_dir(tmp_path)


def test_cli_writes_the_page(run_fit, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main([str(run_fit), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert out.is_file()
    assert out.with_suffix(".json").is_file()


def test_warnings_recorded_in_the_sidecar_and_passed_are_shown(run_fit, tmp_path):
    d = tmp_path / "fit"
    shutil.copytree(run_fit, d)
    side = json.loads((d / "qd_table.json").read_text())
    side["warnings"] = ["fit said this"]
    (d / "qd_table.json").write_text(json.dumps(side))
    page = write_report(d, outputs=[run_fit.parent / "outputs.jsonl"], warnings=["and this"])
    ws = _embedded(page)["warnings"]
    assert {"fit said this", "and this"} <= set(ws)
