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
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..analysis.artifacts import analyze_with_tables, save_fit
from ..analysis.pipeline import AnalysisSpec
from ..errors import ConfigError, DataError, QDAnalysisError
from ..outputs import expand_output_paths, load_outputs
from ._common import base_parser, check_out_dir, run_main

__all__ = ["build_parser", "build_spec", "main"]

log = logging.getLogger("qdanalysis.fit")

AGGREGATOR_CHOICES = ("auto", "plurality", "oracle", "llm")
_AGG_NAMES = {"plurality": "plurality_vote"}
_D = AnalysisSpec  # every default below is the spec's (class attributes of the dataclass)
_DEST = {"vendi_q": "vendi_order"}


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
        "OLS per dataset (arXiv 2502.00674, Eq. 1). Writes qd_table.csv, coefficients.csv, "
        "pairs.parquet (per-question measures) and figures, each with a JSON provenance sidecar.",
    )
    io = p.add_argument_group("input and output")
    io.add_argument(
        "--outputs",
        nargs="+",
        default=None,
        metavar="PATH",
        help="outputs files (JSONL, JSONL.gz, Parquet, CSV) or directories of them "
        "(default: data/)",
    )
    io.add_argument("--out-dir", default="figures", help="directory for tables, figures, sidecars")
    io.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        metavar="NAME",
        help="analyse only these datasets (default: all in the outputs)",
    )
    io.add_argument("--no-figures", action="store_true", help="write tables only")
    io.add_argument(
        "--format",
        nargs="+",
        choices=("csv", "md", "tex"),
        default=["csv"],
        dest="formats",
        metavar="FMT",
        help="table formats: csv, md (Markdown), tex (LaTeX booktabs); several allowed",
    )
    io.add_argument(
        "--width",
        choices=("single", "double"),
        default="single",
        help="width of the coefficient figure (single 3.3 in, double 6.9 in)",
    )
    io.add_argument("--no-progress", action="store_true", help="no progress bars")
    io.add_argument(
        "--report",
        action="store_true",
        help="also write report.html (+ report.json), the interactive HTML report of the fit, "
        "after the tables (see python -m qdanalysis.report)",
    )
    cfg = p.add_argument_group("configurations")
    cfg.add_argument(
        "--proposer-key",
        default=",".join(_D.proposer_key),
        metavar="COL[,COL...]",
        help="columns whose joined values name a proposer type (e.g. model,prompt_variant)",
    )
    cfg.add_argument(
        "--n-proposers", type=_positive_int, default=_D.n_proposers, help="slots per configuration"
    )
    cfg.add_argument(
        "--max-configs",
        type=_positive_int,
        default=_D.max_configs,
        help="sample the configuration space down to this many per dataset",
    )
    cfg.add_argument("--seed", type=int, default=_D.seed, help="seed of the configuration sampling")
    cfg.add_argument(
        "--with-replacement",
        action="store_true",
        help="let one sample fill several slots (lowers diversity)",
    )
    meas = p.add_argument_group("measures")
    meas.add_argument(
        "--aggregator",
        choices=AGGREGATOR_CHOICES,
        default=_D.aggregator,
        help="performance: 'llm' reads the final aggregator rows of a run (role=aggregator); "
        "'plurality' votes on answer_key (ties: expected accuracy of a uniform pick); 'oracle' "
        "is any slot correct; 'auto' = llm when aggregator rows exist, else plurality",
    )
    meas.add_argument(
        "--performance",
        default=None,
        metavar="FILE",
        help="a table of per-(configuration, question) scores computed elsewhere (CSV, JSONL, "
        "Parquet; columns config_id or name, question_id, performance in [0, 1], optional "
        "dataset): replaces the aggregator; its path and SHA-256 go into every sidecar",
    )
    meas.add_argument(
        "--vendi-order",
        type=_order,
        default=_D.vendi_q,
        metavar="Q",
        help="order q of the Vendi Score (0, 0.5, 1, 2, inf, ...)",
    )
    meas.add_argument(
        "--vendi-tol",
        type=float,
        default=_D.vendi_tol,
        help="relative eigenvalue tolerance of the Vendi Score",
    )
    meas.add_argument(
        "--quality",
        choices=("slot", "model"),
        default=_D.quality,
        help="regress on 'slot' quality (mean correct of the very outputs in the "
        "slots) or 'model' quality (mean of each slot model's overall accuracy, the "
        "paper's definition)",
    )
    emb = p.add_argument_group("embeddings")
    emb.add_argument(
        "--embedding-model",
        default=_D.embedding_model,
        help="sentence-transformers model: name, local directory or cached hub id",
    )
    emb.add_argument(
        "--device", default=_D.device, help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps"
    )
    emb.add_argument(
        "--batch-size", type=_positive_int, default=_D.batch_size, help="embedding batch size"
    )
    emb.add_argument(
        "--embedding-dtype",
        choices=("float32", "bfloat16"),
        default=_D.embedding_dtype,
        help="embedding precision (bfloat16: faster on CPUs with AMX/AVX512-BF16)",
    )
    emb.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache directory (SQLite; keyed by model and text hash); "
        "default: $QDANALYSIS_CACHE_DIR, else data/cache",
    )
    emb.add_argument("--no-cache", action="store_true", help="embed everything, store nothing")
    reg = p.add_argument_group("regression")
    reg.add_argument(
        "--cov-type",
        default=_D.cov_type,
        choices=("nonrobust", "HC0", "HC1", "HC2", "HC3"),
        help="OLS covariance of coefficients.*; nonrobust is the paper's plain OLS. "
        "uncertainty.* always lists nonrobust and HC3 (and this one) side by side",
    )
    reg.add_argument(
        "--ddof",
        type=int,
        default=_D.ddof,
        choices=(0, 1),
        help="degrees of freedom of the z-scores' standard deviation",
    )
    reg.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="N bootstrap replicates over questions (percentile CIs for alpha, beta, "
        "alpha-beta, R2); 0 = off",
    )
    reg.add_argument(
        "--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling"
    )
    reg.add_argument(
        "--sensitivity",
        action="store_true",
        help="also refit under every quality measure (mean, K-Norm, Centered-1/K-Norm) and "
        "diversity measure (Vendi q=0.5/1/2/inf, cosine distance, answer count and entropy, "
        "pooled Vendi) and write sensitivity.*",
    )
    return p


def _format_summary(coefs: Any) -> str:
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


def _load(args: argparse.Namespace) -> tuple[list[Path], Any]:
    files = expand_output_paths(args.outputs or ["data"])
    outputs = load_outputs(files)
    if args.datasets:
        unknown = sorted(set(args.datasets) - set(outputs["dataset"]))
        if unknown:
            raise ConfigError(
                f"--datasets: expected names from {sorted(outputs['dataset'].unique())}; got "
                f"unknown {unknown}. Drop --datasets or pick names from that list."
            )
        outputs = outputs[outputs["dataset"].isin(args.datasets)]
    return files, outputs


def build_spec(args: argparse.Namespace) -> AnalysisSpec:
    """The :class:`~qdanalysis.analysis.pipeline.AnalysisSpec` of parsed ``fit`` arguments."""
    # Every spec field has an option of the same name, except vendi_q (--vendi-order).
    # performance_sha256 is computed from the file (no option).
    names = [f.name for f in fields(AnalysisSpec) if f.name != "performance_sha256"]
    values = {n: getattr(args, _DEST.get(n, n)) for n in names}
    values["proposer_key"] = tuple(c.strip() for c in args.proposer_key.split(",") if c.strip())
    values["aggregator"] = _AGG_NAMES.get(args.aggregator, args.aggregator)
    return AnalysisSpec(**values)


#: Library argument names (as they appear in error messages) -> the fit option that sets them.
_FLAGS = {
    "proposer_key": "--proposer-key",
    "aggregator": "--aggregator",
    "quality": "--quality",
    "vendi": "--vendi-order/--vendi-tol",
    "performance=": "--performance",
    "AnalysisSpec.performance": "--performance",
    "PerformanceTable": "--performance",
}


def _with_flags(exc: QDAnalysisError) -> QDAnalysisError:
    """The same error with the fit options that set the arguments it names."""
    msg = str(exc)
    flags = list(dict.fromkeys(f for name, f in _FLAGS.items() if name in msg))
    if not flags:
        return exc
    exc.args = (f"{msg} (fit options: {', '.join(flags)})", *exc.args[1:])
    if isinstance(exc, DataError):
        exc.message = exc.args[0]
    return exc


def _report(res: Any, written: list[Path], elapsed_s: float) -> None:
    emb, params = res.embeddings, res.parameters
    print(  # noqa: T201  (CLI output)
        f"Performance ~ z(quality) + z(diversity), OLS per dataset (cov_type={res.spec.cov_type}; "
        f"quality={params['quality']}; aggregator={params['aggregator']}; Vendi "
        f"q={params['vendi_q']}; embeddings {emb.model}):"
    )
    if params.get("score_scale") == "continuous":
        print(  # noqa: T201
            "correct holds continuous scores: performance and quality are mean scores (×100), "
            "not accuracies (%)"
        )
    print(_format_summary(res.coefficients))  # noqa: T201
    print(  # noqa: T201
        f"\nembedded {emb.n_embedded} texts ({emb.n_cached} from cache, {emb.n_truncated} "
        f"truncated at {emb.max_seq_length} tokens) in {res.timings['embed_s']:.1f} s; total "
        f"{elapsed_s:.1f} s"
    )
    for w in written:
        print(f"wrote {w}")  # noqa: T201


def _analyze(args: argparse.Namespace, outputs: Any) -> tuple[Any, dict[str, Any], list[str]]:
    """The analysis and every table, with the warnings they raised (shown on stderr once the
    analysis ends or fails, and returned as lines for the report)."""
    try:
        spec = build_spec(args)
        return analyze_with_tables(
            outputs,
            spec,
            cache=False if args.no_cache else (args.cache_dir or True),
            progress=not args.no_progress,
            bootstrap=args.bootstrap,
            bootstrap_seed=args.bootstrap_seed,
            sensitivity=args.sensitivity,
        )
    except QDAnalysisError as exc:
        raise _with_flags(exc) from exc.__cause__


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from ..analysis.export import Provenance

    t0 = time.perf_counter()
    # Everything that can fail is checked or computed before the first byte is written; the
    # artifacts are then written into a staging directory and published together (no partial
    # output on any error).
    out = check_out_dir(args.out_dir)
    if args.bootstrap and args.bootstrap < 2:
        raise ConfigError(f"--bootstrap: expected 0 (off) or at least 2; got {args.bootstrap!r}.")
    files, outputs = _load(args)
    res, tables, fit_warnings = _analyze(args, outputs)
    params = dict(res.parameters)
    if tables["_boot"] is not None:
        params["bootstrap"] = tables["_boot"].parameters
    argv_used = list(argv) if argv is not None else sys.argv[1:]
    prov = Provenance(inputs=files, parameters=params, argv=argv_used)
    written = save_fit(
        res,
        tables,
        out,
        prov,
        formats=args.formats,
        figures=not args.no_figures,
        width=args.width,
    )
    if args.report:
        from ..analysis.report import write_report

        # After the tables are published (the page reads them); the page and its sidecar are
        # published together or not at all, and a failure here fails the command.
        page = write_report(out, outputs=files, warnings=fit_warnings, argv=argv_used)
        written += [page, page.with_suffix(".json")]
    _report(res, written, time.perf_counter() - t0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    return run_main(lambda a: _run(a, argv), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
