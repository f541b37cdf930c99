"""Size and opening time of the HTML report at study scale (not part of ``python -m benchmarks``).

``python -m benchmarks.bench_report`` writes a synthetic fit directory of 300 configurations x
1,000 questions (3 models x 6 samples, outputs of about 400 characters) into a temporary folder,
twice: with plurality-vote configurations (no aggregator rows) and with one LLM aggregator row
per (configuration, question); writes the report of each, and opens it in headless Chromium
(Debian's ``chromium``, driven by Playwright): the time to a drawn page, and to a clicked
configuration's questions. ``--fit-dir DIR`` measures the report of a real fit directory instead;
``--screenshot PNG`` saves what the browser shows (top of the page, one configuration opened
below, as in README's picture). Nothing is written to the repository unless asked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _text(rng: np.random.Generator, n: int) -> str:
    words = rng.choice(["the", "answer", "is", "because", "we", "add", "then", "so", "x", "7"], n)
    return " ".join(words.tolist())


def synthetic_fit_dir(
    out: Path, *, n_configs: int = 300, n_questions: int = 1000, aggregator_rows: bool = False
) -> Path:
    """A fit directory (tables, pair table, sidecar) and its outputs file, with invented numbers."""
    from qdanalysis._hashing import file_sha256

    rng = np.random.default_rng(0)
    models, n_samples = ["model-a", "model-b", "model-c"], 6
    rows = []
    questions = [f"Question {q}: " + _text(rng, 40) for q in range(n_questions)]
    for q in range(n_questions):
        for m in models:
            for s in range(n_samples):
                ok = bool(rng.random() < 0.6)
                rows.append(
                    {
                        "dataset": "synthetic",
                        "question_id": f"q{q:05d}",
                        "question": questions[q],
                        "reference": "7",
                        "model": m,
                        "sample_index": s,
                        "output": _text(rng, 80),
                        "answer": "7" if ok else str(rng.integers(0, 9)),
                        "answer_key": "7" if ok else str(rng.integers(0, 9)),
                        "correct": float(ok),
                    }
                )
    slots = [(m, s) for m in models for s in range(n_samples)]
    qd = []
    for c in range(n_configs):
        pick = sorted(rng.choice(len(slots), 6, replace=False).tolist())
        types = [slots[i][0] for i in pick]
        qd.append(
            {
                "dataset": "synthetic",
                "config_id": f"cfg-{c:012x}",
                "name": "".join(t[-1] for t in types),
                "proposers": json.dumps(types),
                "samples": json.dumps([slots[i][1] for i in pick]),
                "method": "self_moa" if len(set(types)) == 1 else "mixed_moa",
                "n_proposers": 6,
                "n_questions": n_questions,
                "quality": float(rng.uniform(50, 70)),
                "diversity": float(rng.uniform(1.5, 3)),
                "performance": float(rng.uniform(50, 80)),
                "aggregator": "llm" if aggregator_rows else "plurality_vote",
            }
        )
        if aggregator_rows:
            for q in range(n_questions):
                rows.append(
                    {
                        "dataset": "synthetic",
                        "question_id": f"q{q:05d}",
                        "question": questions[q],
                        "reference": "7",
                        "model": "model-a",
                        "sample_index": 0,
                        "output": _text(rng, 80),
                        "answer": "7",
                        "answer_key": "7",
                        "correct": 1.0,
                        "role": "aggregator",
                        "config_id": f"cfg-{c:012x}",
                        "step": 0,
                    }
                )
    out.mkdir(parents=True, exist_ok=True)
    src = out / "outputs.jsonl"
    frame = pd.DataFrame(rows)
    if aggregator_rows:
        frame["role"] = frame["role"].fillna("proposer")
    frame.to_json(src, orient="records", lines=True)
    pd.DataFrame(qd).to_csv(out / "qd_table.csv", index=False)
    terms = ["Intercept", "quality_z", "diversity_z"]
    pd.DataFrame(
        {
            "dataset": "synthetic",
            "term": terms,
            "estimate": [65.0, 3.0, 1.0],
            "std_error": 0.3,
            "ci_low": [64.4, 2.4, 0.4],
            "ci_high": [65.6, 3.6, 1.6],
            "p_value": 1e-6,
            "n_obs": n_configs,
            "r2": 0.5,
            "cov_type": "nonrobust",
        }
    ).to_csv(out / "coefficients.csv", index=False)
    n_pairs = n_configs * n_questions
    pd.DataFrame(
        {
            "dataset": "synthetic",
            "config_id": np.repeat([r["config_id"] for r in qd], n_questions),
            "question_id": np.tile([f"q{q:05d}" for q in range(n_questions)], n_configs),
            "quality": rng.integers(0, 7, n_pairs) / 6,
            "diversity": rng.uniform(1, 6, n_pairs),
            "performance": rng.integers(0, 2, n_pairs).astype(float),
        }
    ).to_parquet(out / "pairs.parquet", index=False)
    side = {"inputs": [{"path": src.name, "sha256": file_sha256(src)}], "parameters": {}}
    (out / "qd_table.json").write_text(json.dumps(side))
    return out


_BOX = """id => { const r = document.getElementById(id).getBoundingClientRect();
  return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY}; }"""


def _screenshots(page: object, png: Path) -> None:
    """``png``: the page from its top to the end of the scatter plots; ``<stem>-detail.png``:
    the opened configuration's first questions."""
    pg: Any = page
    pg.evaluate("window.scrollTo(0, 0)")
    width = pg.viewport_size["width"]
    end = pg.evaluate(_BOX, "scatter")["bottom"]
    pg.screenshot(
        path=str(png), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": end}
    )
    box = pg.evaluate(_BOX, "detail")
    clip = {
        "x": 0,
        "y": box["top"],
        "width": width,
        "height": min(1500, box["bottom"] - box["top"]),
    }
    pg.screenshot(path=str(png.with_name(png.stem + "-detail.png")), full_page=True, clip=clip)


def measure(page: Path, screenshot: Path | None = None) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from tests.report.browser import browser

    with browser() as s:
        load_s = s.open(page, timeout_ms=120_000)
        t0 = time.perf_counter()
        s.page.evaluate("window.qdReport.showConfig(0)")
        s.page.wait_for_selector("#questions .q", timeout=60_000)
        detail_s = time.perf_counter() - t0
        if screenshot is not None:
            _screenshots(s.page, screenshot)
        if s.errors or s.blocked:
            raise RuntimeError(f"page errors {s.errors}, blocked requests {s.blocked}")
    return {"open_s": load_s, "detail_s": detail_s}


def _report(fit_dir: Path, page: Path, screenshot: Path | None) -> None:
    from qdanalysis.analysis.report import write_report

    t0 = time.perf_counter()
    write_report(fit_dir, out=page)
    write_s = time.perf_counter() - t0
    folder = page.with_name(f"{page.stem}_files")
    extra = sum(f.stat().st_size for f in folder.iterdir()) if folder.is_dir() else 0
    n = len(pd.read_csv(fit_dir / "qd_table.csv"))
    m = measure(page, screenshot)
    print(
        f"{fit_dir.name}: {n} configurations; page {page.stat().st_size / 2**20:.1f} MiB"
        + (f" + {extra / 2**20:.1f} MiB in {folder.name}/" if extra else "")
        + f"; written in {write_s:.1f} s; opened in {m['open_s']:.2f} s; "
        f"a configuration's questions in {m['detail_s']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_report", description=__doc__)
    p.add_argument("--fit-dir", type=Path, default=None, help="a real fit directory")
    p.add_argument("--screenshot", type=Path, default=None, help="save a PNG of the page")
    p.add_argument("--configs", type=int, default=300)
    p.add_argument("--questions", type=int, default=1000)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qd-report-bench-") as tmp:
        if a.fit_dir is not None:
            _report(a.fit_dir, Path(tmp) / "report.html", a.screenshot)
            return 0
        for agg in (False, True):
            d = synthetic_fit_dir(
                Path(tmp) / ("llm-rows" if agg else "plurality"),
                n_configs=a.configs,
                n_questions=a.questions,
                aggregator_rows=agg,
            )
            _report(d, d / "report.html", None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
