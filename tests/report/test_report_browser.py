"""The report in a real headless Chromium: one point per configuration, clicks open details,
and the page never touches the network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.analysis.report import write_report

from .browser import LOCAL_SCHEMES, browser, chromium_path

pytest.importorskip("playwright")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (make setup)")

_N_POINTS = """() => [...document.querySelectorAll('.qd-scatter')]
  .reduce((n, d) => n + d.data.reduce((m, t) => m + t.x.length, 0), 0)"""
# Pixel position of one point (trace t, point k) of scatter plot `di`, and its configuration row.
_POINT_XY = """([di, t, k]) => { const d = document.getElementById('scatter-' + di);
  d.scrollIntoView({block: "center"});
  const fl = d._fullLayout, tr = d.data[t], r = d.getBoundingClientRect();
  return {x: r.left + fl.xaxis._offset + fl.xaxis.d2p(tr.x[k]),
          y: r.top + fl.yaxis._offset + fl.yaxis.d2p(tr.y[k]), row: tr.customdata[k]}; }"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["run_fit", "vote_fit"])
def test_scatter_click_shows_questions_offline(which, request, tmp_path):
    fit_dir = request.getfixturevalue(which)
    qd = pd.read_csv(fit_dir / "qd_table.csv", dtype={"config_id": str})
    page = write_report(fit_dir, out=tmp_path / "report.html")
    with browser() as s:
        s.open(page)
        assert s.page.evaluate(_N_POINTS) == len(qd)
        # Drawn, not only in the data: one SVG marker per configuration.
        assert s.page.locator(".qd-scatter .scatterlayer .point").count() == len(qd)
        xy = s.page.evaluate(_POINT_XY, [0, 0, 0])
        s.page.mouse.move(xy["x"], xy["y"])
        hover = s.page.locator(".qd-scatter .hoverlayer .hovertext").first
        hover.wait_for(timeout=10_000)
        tip = hover.text_content() or ""
        at = qd.iloc[xy["row"]]
        for part in (f"quality q = {at['quality']:.3f}", f"diversity d = {at['diversity']:.3f}"):
            assert part in tip
        same = qd[(qd["quality"] == at["quality"]) & (qd["diversity"] == at["diversity"])]
        assert any(c in tip for c in same["config_id"])  # this point, or one drawn on top of it
        assert "slots: " in tip
        assert "performance t = " in tip
        s.page.mouse.click(xy["x"], xy["y"])
        s.page.wait_for_selector("#cfg-head", timeout=15_000)
        cid = s.page.get_attribute("#cfg-head", "data-config-id")
        row = int(qd.index[qd["config_id"] == cid][0])
        assert cid in set(same["config_id"])
        s.page.wait_for_selector("#questions .q", timeout=15_000)
        n_q = int(qd["n_questions"].iloc[row])
        assert s.page.locator("#questions .q").count() == min(25, n_q)
        first = s.page.locator("#questions .q").first
        cells = first.locator("table.slots tbody tr:not(.agg) td:first-child code")
        slots = cells.all_inner_texts()
        types, samples = json.loads(qd["proposers"].iloc[row]), json.loads(qd["samples"].iloc[row])
        assert slots == [f"{t}#{k}" for t, k in zip(types, samples, strict=True)]
        check = s.page.inner_text("#cfg-check")
        assert f"t = {qd['performance'].iloc[row]:.3f}" in check
        assert f"is {qd['performance'].iloc[row]:.3f} over {n_q} questions" in check
        s.page.select_option("#q-filter", "wrong")
        s.page.click("#q-next")
        if os.environ.get("QDANALYSIS_REPORT_SCREENSHOT"):
            shot = Path(os.environ["QDANALYSIS_REPORT_SCREENSHOT"]) / f"{which}.png"
            s.page.screenshot(path=str(shot), full_page=True)
        assert s.errors == []
    assert s.blocked == []
    assert s.requests
    assert all(u.startswith(LOCAL_SCHEMES) for u in s.requests)


@pytest.mark.slow
def test_split_page_loads_details_from_its_folder(vote_fit, tmp_path):
    page = write_report(vote_fit, out=tmp_path / "report.html", max_inline_bytes=0)
    with browser() as s:
        s.open(page)
        s.page.evaluate("window.qdReport.showConfig(3)")
        s.page.wait_for_selector("#questions .q", timeout=15_000)
        assert s.errors == []
    loaded = [u for u in s.requests if "report_files/" in u]
    assert sorted(Path(u).name for u in loaded) == ["c3.js", "p0.js"]
    assert s.blocked == []


@pytest.mark.slow
def test_the_harness_sees_and_blocks_a_network_request(tmp_path):
    # Guards the offline assertions above: a page that does reach out is caught.
    page = tmp_path / "p.html"
    page.write_text(
        '<body data-ready="1"><img src="http://192.0.2.1/x.png">'
        '<script>fetch("https://example.invalid/y").catch(() => {})</script></body>'
    )
    with browser() as s:
        s.open(page)
        s.page.wait_for_timeout(500)
    assert any(u.startswith("http://192.0.2.1/") for u in s.blocked)
    assert any(u.startswith("https://example.invalid/") for u in s.blocked)


def _judged_helpers():
    """The judged-data test module (its data slice and stand-in performance file)."""
    import importlib.util

    path = Path(__file__).parents[1] / "stats" / "test_judged_data.py"
    spec = importlib.util.spec_from_file_location("_judged_data_helpers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_AXIS_TITLES = """() => [...document.querySelectorAll('.qd-scatter, .methods-plot')]
  .map(d => [d._fullLayout.xaxis.title.text || "", d._fullLayout.yaxis.title.text || ""])"""


@pytest.mark.slow
def test_judge_scored_fit_is_labelled_mean_score_not_percent(tmp_path, monkeypatch):
    # A fit of judge preferences (continuous correct) scored by a user table: the page's axes
    # must not call mean scores accuracies in %.
    from qdanalysis.analysis import embeddings
    from qdanalysis.analysis.pipeline import AnalysisSpec
    from qdanalysis.analysis.sensitivity import HashingEmbedder
    from qdanalysis.cli.fit import main as fit_main
    from qdanalysis.outputs import load_outputs

    judged = _judged_helpers()
    rows = judged._slice(load_outputs([judged.JUDGED]), 4)
    src = judged._write(rows, tmp_path / "judged.jsonl")
    perf = tmp_path / "performance.csv"
    judged._stand_in_performance(rows, AnalysisSpec(n_proposers=3, with_replacement=True), perf)
    monkeypatch.setattr(
        embeddings, "SentenceTransformerEmbedder", lambda *a, **k: HashingEmbedder()
    )
    out = tmp_path / "fit"
    args = ["--outputs", str(src), "--out-dir", str(out), "--performance", str(perf)]
    flags = ["--n-proposers", "3", "--with-replacement", "--no-figures", "--no-progress", "-q"]
    assert fit_main([*args, *flags]) == 0
    page = write_report(out, out=tmp_path / "report.html")
    with browser() as s:
        s.open(page)
        titles = s.page.evaluate(_AXIS_TITLES)
        assert s.errors == []
    assert titles, "no plot drawn"
    for x, y in titles:
        assert "%" not in x + y, (x, y)
    assert ["quality q (mean score of the slots, ×100)", "diversity d (Vendi Score)"] in titles
    assert any(y == "performance t (mean score ×100)" for _, y in titles)
