"""Gram reuse: per-question Gram blocks sliced per configuration vs recomputing products.

Also the scaling study: time and memory of the measure stage as configurations, questions
and proposers per configuration grow (plotted to ``results/scaling.png``), and the pair stage
at 10⁵, 10⁶ and 10⁷ (configuration, question) pairs, one fresh process per size so that each
peak memory is its own: ``python -m benchmarks.bench_diversity_table CONFIGS QUESTIONS [MODE]``
prints one JSON row (MODE ``chunked``, the default, or ``one-pass``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from qdanalysis.analysis.diversity import vendi_score
from qdanalysis.analysis.pairs import (
    PairRequest,
    _gram_measures,
    iter_pair_blocks,
    measure_pairs,
    pair_frame,
    slot_index,
    summarise_pair_frames,
    summarise_pairs,
)

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
    rows += _pair_stage_table(quick=quick, out_dir=out_dir)
    return rows, plot_scaling(rows, out_dir)


def plot_scaling(rows: list[dict], out_dir: Path) -> Path | None:
    """``scaling.png``: time and peak memory along each axis of ``rows`` (one column each; the
    pair-stage column shows the chunked and the one-pass engine)."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    axes = list(dict.fromkeys(r["axis"].split(" (")[0] for r in rows))
    fig, axs = plt.subplots(2, len(axes), figsize=(3.4 * len(axes), 5.5), constrained_layout=True)
    for j, axis in enumerate(axes):
        x: list[float] = []
        for k, name in enumerate(
            dict.fromkeys(r["axis"] for r in rows if r["axis"].startswith(axis))
        ):
            sub = [r for r in rows if r["axis"] == name]
            xs = [float(r["value"]) for r in sub]
            x = sorted(set(x) | set(xs))
            label = name[len(axis) :].strip(" ()") or None
            axs[0, j].plot(xs, [float(r["seconds"]) for r in sub], "o-", color=f"C{k}", label=label)
            axs[1, j].plot(
                xs, [float(r["peak_mib"]) for r in sub], "o-", color=f"C{k + 1}", label=label
            )
        axs[1, j].set_xlabel(axis)
        axs[0, j].set_title(f"growth with {axis}", fontsize=9)
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
            if a.get_legend_handles_labels()[1]:
                a.legend(fontsize=7)
    axs[0, 0].set_ylabel("wall time (s)")
    axs[1, 0].set_ylabel("peak memory (MiB, tracemalloc)")
    fig.suptitle("Measure stage (quality, Vendi q=1, plurality vote), synthetic data")
    path = out_dir / "scaling.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: (configurations, questions) of the pair-stage rows: 10⁵, 10⁶ and 10⁷ pairs, the last both
#: question-heavy and configuration-heavy.
PAIR_SCALES = ((100, 1_000), (1_000, 1_000), (1_000, 10_000), (10_000, 1_000))
#: One pass holds every pair's arrays at once (3.2 GB at 10⁷ pairs): measured up to here only.
ONE_PASS_MAX = 10_000_000


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pair_stage(n_configs: int, n_questions: int, mode: str = "chunked") -> dict:
    """Time and memory of the pair stage (quality, Vendi q=1, plurality vote, and the
    per-configuration means) on a synthetic study, in this process."""
    t0 = time.perf_counter()
    # 3 types x 6 samples: C(18, 6) = 18,564 distinct 6-slot configurations to draw from.
    frame, configs, emb = synthetic_study(
        n_questions=n_questions, n_configs=n_configs, n_models=3, n_samples=6
    )
    setup_s = time.perf_counter() - t0
    rss0 = _rss_mib()
    tracemalloc.start()
    t = time.perf_counter()
    cpu = time.process_time()
    if mode == "chunked":
        chunks = iter_pair_blocks(frame, configs, emb, dataset="synthetic")
        summary = summarise_pair_frames(pair_frame(b) for b in chunks)
    else:
        summary = summarise_pairs(measure_pairs(frame, configs, emb, dataset="synthetic"))
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "mode": mode,
        "n_configs": len(configs),
        "n_questions": n_questions,
        "n_pairs": len(configs) * n_questions,
        "pairs_kept": int(summary["n_questions"].sum()),
        "setup_s": round(setup_s, 2),
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),  # all threads: the fair measure on a shared machine
        "us_per_pair": round(seconds / (len(configs) * n_questions) * 1e6, 3),
        "stage_peak_mib": round(peak, 1),
        "rss_before_mib": round(rss0, 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _many(n_configs: int) -> str:
    return f", {n_configs:,} configs" if n_configs > 1_000 else ""


def _pair_stage_table(*, quick: bool, out_dir: Path) -> list[dict]:
    """Run :func:`pair_stage_rows`, write ``pair_stage.csv``; rows in the scaling.csv form."""
    import csv

    full = pair_stage_rows(quick=quick)
    with (out_dir / "pair_stage.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(full[0]))
        w.writeheader()
        w.writerows(full)
    return [
        {
            "axis": f"pairs ({r['mode']}{_many(r['n_configs'])})",
            "value": r["n_pairs"],
            "n_configs": r["n_configs"],
            "n_questions": r["n_questions"],
            "n_proposers": 6,
            "seconds": r["seconds"],
            "peak_mib": r["stage_peak_mib"],
        }
        for r in full
    ]


def pair_stage_rows(*, quick: bool, scales=PAIR_SCALES) -> list[dict]:
    """:func:`pair_stage` at each scale in a fresh process (``nice``: long and CPU-bound)."""
    if quick:
        scales = ((30, 100),)
    rows = []
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for c, q in scales:
        for mode in ("chunked", "one-pass"):
            if mode == "one-pass" and c * q > ONE_PASS_MAX:
                continue
            cmd = [sys.executable, "-m", "benchmarks.bench_diversity_table", str(c), str(q), mode]
            out = subprocess.run(
                ["nice", "-n", "10", *cmd],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"  pair stage {mode} {row['n_pairs']:,} pairs: {fmt_s(row['seconds'])}, "
                f"stage peak {row['stage_peak_mib']:.0f} MiB, max RSS "
                f"{row['max_rss_mib']:.0f} MiB",
                flush=True,
            )
            rows.append(row)
    return rows


if __name__ == "__main__":
    print(json.dumps(pair_stage(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])))
