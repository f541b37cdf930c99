"""Designs of configurations: the α − β interval width each design buys per aggregated config.

On the shipped data (``python -m qdanalysis.fit``'s default input, plurality vote as the
aggregator, 6 slots, 300 candidate configurations per dataset, MiniLM + Vendi q=1), each design
of :func:`qdanalysis.analysis.design.choose_configs` picks ``n`` of the 300 candidates; the
paper's OLS is fitted on those alone and the 95% interval of α − β recorded:

- ``width_fit``: in the fit's own units (z-scores within the chosen set, what the toolkit
  reports);
- ``width_cand``: in one unit for every design (quality and diversity z-scored over the 300
  candidates), the fair comparison;
- ``width_alpha_cand``, ``width_beta_cand``: the same for α and β alone (a design that helps
  α − β can hurt each, e.g. by making q and d strongly anti-correlated);
- ``n_random_equiv``: how many randomly chosen configurations give the same ``width_cand``
  (n × (random's width / this width)², random's width the median over its seeds): the
  aggregator calls a design saves.

Writes ``results/designs.csv`` and ``results/designs.md`` with a provenance sidecar each.
Usage: ``python -m benchmarks.bench_designs [--quick] [--out-dir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = sorted((ROOT / "data").glob("*.jsonl.gz"))


def candidate_tables(n_candidates: int) -> dict[str, pd.DataFrame]:
    """Each dataset's QD table of ``n_candidates`` configurations (plurality vote)."""
    from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
    from qdanalysis.outputs import load_outputs

    spec = AnalysisSpec(max_configs=n_candidates, seed=0, device="cpu")
    res = analyze(load_outputs(DATA), spec, cache=ROOT / "data" / "cache", progress=False)
    fit = res.fit_table
    return {ds: g.reset_index(drop=True) for ds, g in fit.groupby("dataset", sort=True)}


def _widths(table: pd.DataFrame, predictors: tuple[str, str], standardize: bool) -> list[float]:
    """95% interval widths of α − β, α and β of the paper's OLS on ``table``."""
    from qdanalysis.analysis.regression import RegressionSpec, compare_terms, fit_ols

    spec = RegressionSpec(predictors=predictors, standardize=standardize)
    a, b = spec.terms
    res = fit_ols(table, spec)
    row = compare_terms(res, a, b).iloc[0]
    coefs = res.coefs.set_index("term")
    return [float(row["ci_high"] - row["ci_low"])] + [
        float(coefs.loc[t, "ci_high"] - coefs.loc[t, "ci_low"]) for t in (a, b)
    ]


def evaluate(cands: pd.DataFrame, n: int, design: str, seed: int) -> dict[str, float]:
    """Fit on the ``n`` configurations ``design`` picks; widths and criteria."""
    import warnings

    from qdanalysis.analysis.design import choose_configs, design_criteria
    from qdanalysis.analysis.regression import standardize

    z = standardize(cands, ["quality", "diversity"], suffix="_cand")
    chosen = choose_configs(z, n, design=design, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collinearity warnings are part of what is compared
        w_fit = _widths(chosen, ("quality", "diversity"), True)[0]
        w_cand, w_alpha, w_beta = _widths(chosen, ("quality_cand", "diversity_cand"), False)
    crit = design_criteria(chosen, z)
    return {
        "width_fit": w_fit,
        "width_cand": w_cand,
        "width_alpha_cand": w_alpha,
        "width_beta_cand": w_beta,
        "corr_q_d": crit["corr"],
        "var_criterion": crit["var_alpha_minus_beta"],
        "performance_sd": float(chosen["performance"].std()),
    }


def run_designs(*, quick: bool) -> pd.DataFrame:
    from qdanalysis.analysis.design import DESIGNS

    n_cand, n, seeds = (300, 60, range(5)) if quick else (300, 60, range(20))
    rows = []
    for ds, cands in candidate_tables(n_cand).items():
        rows.append(
            {
                "dataset": ds,
                "design": "all candidates",
                "seed": 0,
                "n": len(cands),
                **evaluate(cands, len(cands), "random", 0),
            }
        )
        for design in DESIGNS:
            for seed in seeds if design == "random" else seeds[:3]:
                rows.append(
                    {
                        "dataset": ds,
                        "design": design,
                        "seed": seed,
                        "n": n,
                        **evaluate(cands, n, design, seed),
                    }
                )
    return pd.DataFrame(rows)


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds per dataset and design, with the random-equivalent size."""
    g = raw.groupby(["dataset", "design"], sort=False)
    out = g.agg(
        n=("n", "first"),
        seeds=("seed", "nunique"),
        width_fit=("width_fit", "median"),
        width_cand=("width_cand", "median"),
        width_cand_max=("width_cand", "max"),
        width_alpha_cand=("width_alpha_cand", "median"),
        width_beta_cand=("width_beta_cand", "median"),
        corr_q_d=("corr_q_d", "median"),
        var_criterion=("var_criterion", "median"),
    ).reset_index()
    rand = out[out["design"] == "random"].set_index("dataset")["width_cand"]
    ratio = out["dataset"].map(rand) / out["width_cand"]
    out["width_vs_random"] = 1 / ratio
    out["n_random_equiv"] = np.round(out["n"] * ratio**2).astype(int)
    out.loc[out["design"] == "all candidates", "n_random_equiv"] = out["n"]
    return out


def main(argv: list[str] | None = None) -> int:
    from qdanalysis.analysis.export import Provenance, save_table

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_designs", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer random seeds")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    table = summarise(run_designs(quick=args.quick))
    prov = Provenance(
        inputs=DATA,
        parameters={
            "aggregator": "plurality_vote",
            "n_candidates": 300,
            "n_chosen": 60,
            "n_proposers": 6,
            "vendi_q": 1.0,
            "cov_type": "nonrobust",
            "alpha": 0.05,
            "quick": args.quick,
        },
        argv=[
            "python",
            "-m",
            "benchmarks.bench_designs",
            *(sys.argv[1:] if argv is None else argv),
        ],
    )
    for path in save_table(
        table,
        "designs",
        out_dir=args.out_dir,
        formats=("csv", "md"),
        provenance=prov,
        float_format="%.4g",
    ):
        print(f"wrote {path}")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
