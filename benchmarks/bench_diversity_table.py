"""Gram reuse: per-question Gram blocks sliced per configuration vs recomputing products.

Also the scaling study: time and memory of the measure stage as configurations, questions
and proposers per configuration grow (plotted to ``results/scaling.png``).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from qdanalysis.analysis.diversity import vendi_score
from qdanalysis.analysis.pairs import PairRequest, _gram_measures, measure_pairs, slot_index

from ._common import Result, fmt_s, paired, timed
from ._synthetic import synthetic_study

SECTION = "gram reuse"


def _recompute(idx, emb) -> np.ndarray:
    """Baseline: per configuration, gather its embeddings and form every product anew."""
    erow = emb.rows_for(idx.frame["output"].tolist())
    out = np.full(idx.valid.shape, np.nan)
    for c in range(idx.rows.shape[0]):
        e = emb.vectors[erow[idx.rows[c]]].astype(np.float64)  # (questions, n, d)
        out[c] = vendi_score(e @ np.swapaxes(e, -1, -2))
    return out


def _vendi_pairs(idx, emb) -> np.ndarray:
    """The engine's Gram route: one block per question, sliced per configuration."""
    return _gram_measures(idx, emb, idx.valid, PairRequest())[0]["vendi_q1"]


def _peak(fn) -> tuple[float, float]:
    tracemalloc.start()
    t, _ = timed(fn)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return t, peak / 2**20


def run(*, quick: bool, repeats: int) -> list[Result]:
    n_q, n_c = (100, 30) if quick else (1_000, 300)
    frame, configs, emb = synthetic_study(n_questions=n_q, n_configs=n_c)
    idx = slot_index(frame, configs)
    p, base, ours = paired(lambda: _recompute(idx, emb), lambda: _vendi_pairs(idx, emb), repeats)
    _, mem_base = _peak(lambda: _recompute(idx, emb))
    _, mem_ours = _peak(lambda: _vendi_pairs(idx, emb))
    diff = float(np.nanmax(np.abs(base - ours)))
    r = p.result(
        section=SECTION,
        benchmark="diversity table (Vendi q=1)",
        size=f"{n_c} configs x {n_q:,} questions x 6 of 12 outputs (synthetic 384-d)",
        baseline="recompute E Eᵀ per configuration",
        candidate="one Gram block per question, sliced",
        agreement=f"max |diff| {diff:.1e}",
        memory=f"peak {mem_ours:.0f} MiB vs {mem_base:.0f} MiB (tracemalloc)",
    )
    return [r]


def scaling(*, quick: bool, out_dir: Path) -> tuple[list[dict], Path | None]:
    """Time and peak memory of ``measure_pairs`` along three axes; returns rows and a plot."""
    if quick:
        axes = {
            "configurations": [("n_configs", v, {"n_questions": 100}) for v in (10, 30)],
            "questions": [("n_questions", v, {"n_configs": 30}) for v in (50, 100)],
            "proposers": [("n_proposers", v, {"n_questions": 50, "n_configs": 20}) for v in (3, 6)],
        }
    else:
        axes = {
            "configurations": [
                ("n_configs", v, {"n_questions": 1_319}) for v in (50, 100, 200, 300)
            ],
            "questions": [("n_questions", v, {"n_configs": 300}) for v in (250, 500, 1_000, 1_319)],
            "proposers": [
                ("n_proposers", v, {"n_questions": 250, "n_configs": 100, "n_samples": 16})
                for v in (3, 6, 12, 24)
            ],
        }
    rows = []
    for axis, points in axes.items():
        for key, value, fixed in points:
            kw = {"n_questions": 1_319, "n_configs": 300, **fixed, key: value}
            frame, configs, emb = synthetic_study(**kw)

            def measure(frame=frame, configs=configs, emb=emb):
                return measure_pairs(frame, configs, emb, dataset="synthetic")

            t2, _ = timed(measure)
            t, mem = _peak(measure)
            rows.append(
                {
                    "axis": axis,
                    "value": value,
                    "n_configs": len(configs),
                    "n_questions": kw["n_questions"],
                    "n_proposers": kw.get("n_proposers", 6),
                    "seconds": min(t, t2),
                    "peak_mib": mem,
                }
            )
            print(f"  scaling {axis}={value}: {fmt_s(min(t, t2))}, peak {mem:.0f} MiB", flush=True)
    path = None
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt

        fig, axs = plt.subplots(2, 3, figsize=(10, 5.5), constrained_layout=True)
        for j, axis in enumerate(axes):
            sub = [r for r in rows if r["axis"] == axis]
            x = [r["value"] for r in sub]
            axs[0, j].plot(x, [r["seconds"] for r in sub], "o-")
            axs[1, j].plot(x, [r["peak_mib"] for r in sub], "o-", color="C1")
            axs[1, j].set_xlabel(axis)
            for a in axs[:, j]:
                a.set_xscale("log")
                a.set_yscale("log")
                # Label the measured sizes only; log axes' default minor labels collide.
                a.xaxis.set_major_locator(mpl.ticker.FixedLocator(x))
                a.xaxis.set_major_formatter(mpl.ticker.FixedFormatter([f"{v:g}" for v in x]))
                a.xaxis.set_minor_locator(mpl.ticker.NullLocator())
                a.yaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                a.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
                a.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
                a.grid(True, which="major", lw=0.3, alpha=0.5)
        axs[0, 0].set_ylabel("measure_pairs time (s)")
        axs[1, 0].set_ylabel("peak memory (MiB)")
        for j, axis in enumerate(axes):
            axs[0, j].set_title(f"growth with {axis}", fontsize=9)
        fig.suptitle("Measure stage (quality, Vendi q=1, plurality vote), synthetic data")
        path = out_dir / "scaling.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
    except ImportError:
        pass
    return rows, path
