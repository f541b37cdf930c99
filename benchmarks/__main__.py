"""Run every benchmark and write ``results/results.csv`` and ``results/results.md``.

Usage: ``python -m benchmarks [--quick] [--only SECTION ...] [--repeats N] [--out-dir DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

from ._common import RESULT_COLUMNS, Result, fmt_s, machine_info

SECTIONS = ("vendi", "gram", "embeddings", "e2e", "import", "designs", "serve")


def _fmt_ratio(r: Result) -> str:
    if math.isnan(r.ratio):
        return "—"
    return f"{r.ratio:,.1f}× ({r.ratio_min:,.1f}–{r.ratio_max:,.1f})"


def _fmt_time(x: float) -> str:
    return "—" if math.isnan(x) else fmt_s(x)


def write_markdown(path: Path, results: list[Result], info: dict[str, str], extra: str) -> None:
    lines = ["# qdanalysis benchmarks", ""]
    lines.append(
        "Ratio = baseline time / candidate time (higher is better): median over interleaved "
        "repeats, (min–max) across repeats. Produced by `python -m benchmarks`."
    )
    lines += ["", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += [
        "",
        "| benchmark | size | baseline → candidate | baseline | candidate | ratio (min–max) "
        "| repeats | goal | met | agreement | memory / note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        note = "; ".join(x for x in (r.memory, r.note) if x).replace("|", "\\|")
        r = Result(
            **{k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in r.row().items()}
        )
        lines.append(
            f"| {r.benchmark} | {r.size} | {r.baseline} → {r.candidate} | "
            f"{_fmt_time(r.baseline_s)} | {_fmt_time(r.candidate_s)} | {_fmt_ratio(r)} | "
            f"{r.repeats} | {r.goal} | {r.met} | {r.agreement} | {note} |"
        )
    if extra:
        lines += ["", extra]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (~1 minute)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None, help="sections to run")
    p.add_argument("--repeats", type=int, default=None, help="repeats per timing (default 3)")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where results.csv, results.md and scaling.png go",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    repeats = args.repeats or (1 if args.quick else 3)
    sections = args.only or list(SECTIONS)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    import qdanalysis

    info["qdanalysis"] = qdanalysis.__version__
    info["mode"] = "quick" if args.quick else "full"
    results: list[Result] = []
    extra = ""
    t0 = time.perf_counter()
    for name in sections:
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        if name == "designs":  # interval widths, not timings: its own designs.csv / .md
            from . import bench_designs

            bench_designs.main(["--out-dir", str(args.out_dir)] + ["--quick"] * args.quick)
            print(f"[{name}] {time.perf_counter() - t:.0f} s", flush=True)
            continue
        if name == "vendi":
            from . import bench_vendi as mod
        elif name == "gram":
            from . import bench_diversity_table as mod
        elif name == "embeddings":
            from . import bench_embeddings as mod
        elif name == "e2e":
            from . import bench_e2e as mod
        elif name == "serve":
            from . import bench_serve as mod
        else:
            from . import bench_import as mod
        rows = mod.run(quick=args.quick, repeats=repeats)
        if name == "gram":
            srows, plot = mod.scaling(quick=args.quick, out_dir=args.out_dir)
            with (args.out_dir / "scaling.csv").open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(srows[0]))
                w.writeheader()
                w.writerows(srows)
            extra = (
                "Scaling of the measure stage (`measure_pairs`: quality, Vendi q=1, plurality "
                "vote; synthetic 384-d data): `scaling.csv`"
                + (", plot `scaling.png`." if plot else ".")
            )
        for r in rows:
            print(f"  {r.benchmark} [{r.size}]: {_fmt_ratio(r)} {r.agreement} {r.note}", flush=True)
        results.extend(rows)
        print(f"[{name}] {time.perf_counter() - t:.0f} s", flush=True)
    info["total benchmark time"] = f"{time.perf_counter() - t0:.0f} s"
    if not results:  # e.g. --only designs: keep the timing tables of the last full run
        return 0
    with (args.out_dir / "results.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(RESULT_COLUMNS))
        w.writeheader()
        w.writerows(r.row() for r in results)
    write_markdown(args.out_dir / "results.md", results, info, extra)
    print(f"wrote {args.out_dir / 'results.csv'}\nwrote {args.out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
