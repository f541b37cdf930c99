"""CLI: outputs -> configurations -> QD table -> per-dataset regression, tables and figures.

``python -m qdanalysis.fit`` with no arguments runs on the outputs shipped in ``data/`` and
writes to ``figures/``. See ``python -m qdanalysis.fit --help``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ._cli import base_parser, run_main
from .configs import AggregatorSpec, ConfigSpec, configs_from_frame, generate_configs, type_letters
from .diversity import DEFAULT_TOL
from .errors import ConfigError, DataError
from .outputs import add_proposer_column, find_output_files, load_outputs, proposer_rows

__all__ = ["build_parser", "main"]

log = logging.getLogger("qdanalysis.fit")

AGGREGATOR_CHOICES = ("auto", "plurality", "oracle", "llm")
_AGG_NAMES = {"plurality": "plurality_vote", "oracle": "oracle", "llm": "llm"}


def _order(text: str) -> float:
    if text.lower() in ("inf", "infinity"):
        return math.inf
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'inf'; got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'inf'; got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m qdanalysis.fit``."""
    p = base_parser(
        "python -m qdanalysis.fit",
        "Build proposer configurations from an outputs table, measure each configuration's "
        "quality (mean proposer accuracy), diversity (Vendi Score of output embeddings) and "
        "performance (ensemble accuracy), and fit performance ~ z(quality) + z(diversity) by "
        "OLS per dataset (arXiv 2502.00674, Eq. 1). Writes qd_table.csv, coefficients.csv and "
        "figures, each with a JSON provenance sidecar.",
    )
    io = p.add_argument_group("input and output")
    io.add_argument(
        "--outputs", nargs="+", default=None, metavar="PATH",
        help="outputs files (JSONL, JSONL.gz, Parquet, CSV) or directories of them "
        "(default: data/)",
    )
    io.add_argument("--out-dir", default="figures", help="directory for tables, figures, sidecars")
    io.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                    help="analyse only these datasets (default: all in the outputs)")
    io.add_argument("--no-figures", action="store_true", help="write tables only")
    io.add_argument("--no-progress", action="store_true", help="no progress bars")
    cfg = p.add_argument_group("configurations")
    cfg.add_argument(
        "--proposer-key", default="model", metavar="COL[,COL...]",
        help="columns whose joined values name a proposer type (e.g. model,prompt_variant)",
    )
    cfg.add_argument("--n-proposers", type=_positive_int, default=6, help="slots per configuration")
    cfg.add_argument("--max-configs", type=_positive_int, default=300,
                     help="sample the configuration space down to this many per dataset")
    cfg.add_argument("--seed", type=int, default=0, help="seed of the configuration sampling")
    cfg.add_argument("--with-replacement", action="store_true",
                     help="let one sample fill several slots (lowers diversity)")
    meas = p.add_argument_group("measures")
    meas.add_argument(
        "--aggregator", choices=AGGREGATOR_CHOICES, default="auto",
        help="performance: 'llm' reads the final aggregator rows of a run (role=aggregator); "
        "'plurality' votes on answer_key (ties: expected accuracy of a uniform pick); 'oracle' "
        "is any slot correct; 'auto' = llm when aggregator rows exist, else plurality",
    )
    meas.add_argument("--vendi-order", type=_order, default=1.0, metavar="Q",
                      help="order q of the Vendi Score (0, 0.5, 1, 2, inf, ...)")
    meas.add_argument("--vendi-tol", type=float, default=DEFAULT_TOL,
                      help="relative eigenvalue tolerance of the Vendi Score")
    meas.add_argument("--quality", choices=("slot", "model"), default="slot",
                      help="regress on 'slot' quality (mean correct of the very outputs in the "
                      "slots) or 'model' quality (mean of each slot model's overall accuracy, the "
                      "paper's definition)")
    emb = p.add_argument_group("embeddings")
    emb.add_argument("--embedding-model", default="all-MiniLM-L6-v2",
                     help="sentence-transformers model: name, local directory or cached hub id")
    emb.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    emb.add_argument("--batch-size", type=_positive_int, default=64, help="embedding batch size")
    emb.add_argument("--embedding-dtype", choices=("float32", "bfloat16"), default="float32",
                     help="embedding precision (bfloat16: faster on CPUs with AMX/AVX512-BF16)")
    emb.add_argument("--cache-dir", default="data/cache",
                     help="embedding cache directory (SQLite; keyed by model and text hash)")
    emb.add_argument("--no-cache", action="store_true", help="embed everything, store nothing")
    reg = p.add_argument_group("regression")
    reg.add_argument("--cov-type", default="nonrobust",
                     choices=("nonrobust", "HC0", "HC1", "HC2", "HC3"),
                     help="OLS covariance (nonrobust is the paper's plain OLS)")
    reg.add_argument("--ddof", type=int, default=1, choices=(0, 1),
                     help="degrees of freedom of the z-scores' standard deviation")
    return p


def _select_configs(
    rows: pd.DataFrame, args: argparse.Namespace, runner: pd.DataFrame
) -> dict[str, list[ConfigSpec]]:
    out: dict[str, list[ConfigSpec]] = {}
    for ds, g in rows.groupby("dataset", sort=True):
        r = runner[runner["dataset"] == ds] if not runner.empty else runner
        if not r.empty:
            out[str(ds)] = configs_from_frame(r)
        else:
            out[str(ds)] = generate_configs(
                g, n_proposers=args.n_proposers, max_configs=args.max_configs, seed=args.seed,
                with_replacement=args.with_replacement,
                aggregator=AggregatorSpec(kind="oracle" if args.aggregator == "oracle" else "plurality_vote"),
            )
    return out


def _format_summary(coefs: pd.DataFrame) -> str:
    lines = [
        f"{'dataset':<34}{'n':>5}  {'alpha':>7} {'SE':>6} {'p':>9}   {'beta':>7} {'SE':>6} "
        f"{'p':>9}   {'R2':>6}  {'p(a=b)':>9}  {'r(q,d)':>6}"
    ]
    for ds, g in coefs.groupby("dataset", sort=True):
        t = g.set_index("term")
        a, b = t.loc["quality_z"], t.loc["diversity_z"]
        w = t.loc["quality_z - diversity_z"] if "quality_z - diversity_z" in t.index else None
        lines.append(
            f"{ds:<34}{int(a['n_obs']):>5}  {a['estimate']:>7.3f} {a['std_error']:>6.3f} "
            f"{a['p_value']:>9.2g}   {b['estimate']:>7.3f} {b['std_error']:>6.3f} "
            f"{b['p_value']:>9.2g}   {a['r2']:>6.3f}  "
            f"{(w['p_value'] if w is not None else float('nan')):>9.2g}  "
            f"{a['corr_quality_diversity']:>6.3f}"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from .embeddings import EmbeddingCache, SentenceTransformerEmbedder, embed_texts
    from .export import Provenance, save_figure, save_table
    from .qdtable import aggregator_scores, build_qd_table
    from .regression import RegressionSpec, coefficient_table, fit_by

    t0 = time.perf_counter()
    paths = args.outputs or ["data"]
    files: list[Path] = []
    for p in paths:
        pp = Path(p)
        files.extend(find_output_files(pp) if pp.is_dir() else [pp])
    outputs = load_outputs(files)
    if args.datasets:
        unknown = sorted(set(args.datasets) - set(outputs["dataset"]))
        if unknown:
            raise ConfigError(
                f"--datasets: expected names from {sorted(outputs['dataset'].unique())}; got "
                f"unknown {unknown}."
            )
        outputs = outputs[outputs["dataset"].isin(args.datasets)]
    key = [c.strip() for c in args.proposer_key.split(",") if c.strip()]
    rows = add_proposer_column(proposer_rows(outputs), key)
    if rows.empty:
        raise DataError("expected proposer rows (no role, or role 'proposer'); the outputs have none.")
    runner = pd.DataFrame()
    has_agg = "role" in outputs.columns and (outputs["role"] == "aggregator").any()
    aggregator = args.aggregator
    if aggregator == "auto":
        aggregator = "llm" if has_agg else "plurality"
    if aggregator == "llm":
        if not has_agg:
            raise ConfigError(
                "--aggregator llm: expected aggregator rows (role == 'aggregator' with config_id "
                "and config); the outputs have none. Use --aggregator plurality or oracle."
            )
        runner = outputs[outputs["role"] == "aggregator"]
        if "config" not in runner.columns:
            raise DataError(
                "aggregator rows need a 'config' column (the ConfigSpec JSON) to rebuild their "
                "configurations; it is missing.",
                column="config",
            )
    configs = _select_configs(rows, args, runner)
    for ds, cs in configs.items():
        log.info("dataset %s: %d configurations", ds, len(cs))
    embedder = SentenceTransformerEmbedder(
        args.embedding_model, device=args.device, batch_size=args.batch_size,
        dtype=args.embedding_dtype,
    )
    cache = None if args.no_cache else EmbeddingCache(Path(args.cache_dir) / "embeddings.sqlite")
    t_emb = time.perf_counter()
    emb = embed_texts(rows["output"].tolist(), embedder, cache=cache, progress=not args.no_progress)
    t_emb = time.perf_counter() - t_emb
    runs = aggregator_scores(outputs) if aggregator == "llm" else None
    letters = {ds: type_letters(g["proposer"].unique().tolist()) for ds, g in rows.groupby("dataset")}
    qd, _pairs = build_qd_table(
        rows, configs, emb, q=args.vendi_order, tol=args.vendi_tol,
        aggregator=_AGG_NAMES[aggregator], runs=runs, letters=letters,
    )
    quality_col = "quality" if args.quality == "slot" else "quality_model"
    spec = RegressionSpec(cov_type=args.cov_type, ddof=args.ddof)
    # The regressor is always named quality_z; --quality chooses which measure feeds it.
    fit_input = qd if quality_col == "quality" else qd.assign(quality=qd["quality_model"])
    results = fit_by(fit_input, spec)
    coefs = coefficient_table(results)
    out = Path(args.out_dir)
    params: dict[str, Any] = {
        "embedding_model": emb.model,
        "embedding_device": emb.device,
        "embedding_dtype": args.embedding_dtype,
        "max_seq_length": emb.max_seq_length,
        "n_texts": emb.n_texts,
        "n_truncated": emb.n_truncated,
        "truncated_share": round(emb.truncated_share, 6),
        "vendi_q": "inf" if math.isinf(args.vendi_order) else args.vendi_order,
        "vendi_tol": args.vendi_tol,
        "aggregator": _AGG_NAMES[aggregator],
        "quality": quality_col,
        "formula": spec.formula,
        "cov_type": args.cov_type,
        "ddof": args.ddof,
        "proposer_key": key,
        "n_proposers": args.n_proposers,
        "max_configs": args.max_configs,
        "seed": args.seed,
        "with_replacement": args.with_replacement,
        "letters": letters,
        "n_configs": {ds: len(c) for ds, c in configs.items()},
    }
    prov = Provenance(inputs=files, parameters=params, argv=list(argv) if argv is not None else sys.argv[1:])
    written = save_table(qd, "qd_table", out_dir=out, provenance=prov)
    written += save_table(coefs, "coefficients", out_dir=out, provenance=prov)
    if not args.no_figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .paper import table4
        from .plotting import coefficient_figure, paper_style, qd_scatter_figure

        with paper_style():
            fig = coefficient_figure(coefs, reference=table4(), width="single")
            written += save_figure(fig, "fig_coefficients", out_dir=out, provenance=prov)
            plt.close(fig)
            fig = qd_scatter_figure(qd, width="double")
            written += save_figure(fig, "fig_qd_scatter", out_dir=out, provenance=prov)
            plt.close(fig)
    print(  # noqa: T201  (CLI output)
        f"Performance ~ z(quality) + z(diversity), OLS per dataset (cov_type={args.cov_type}; "
        f"quality={quality_col}; aggregator={_AGG_NAMES[aggregator]}; Vendi q={params['vendi_q']}; "
        f"embeddings {emb.model}):"
    )
    print(_format_summary(coefs))  # noqa: T201
    print(  # noqa: T201
        f"\nembedded {emb.n_embedded} texts ({emb.n_cached} from cache, {emb.n_truncated} "
        f"truncated at {emb.max_seq_length} tokens) in {t_emb:.1f} s; total "
        f"{time.perf_counter() - t0:.1f} s"
    )
    for w in written:
        print(f"wrote {w}")  # noqa: T201
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    return run_main(lambda a: _run(a, argv), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
