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
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..analysis.artifacts import analyze_with_tables, save_fit
from ..analysis.embeddings import EMBEDDING_DTYPES, LONG_TEXT_MODES
from ..analysis.pipeline import AnalysisSpec
from ..analysis.regression import CI_METHODS, format_p
from ..errors import ConfigError, DataError, DataWarning, QDAnalysisError
from ..outputs import expand_output_paths, load_outputs
from ._common import base_parser, check_out_dir, run_main

__all__ = ["build_parser", "build_spec", "main"]

log = logging.getLogger("qdanalysis.fit")

AGGREGATOR_CHOICES = ("auto", "plurality", "oracle", "llm")
_AGG_NAMES = {"plurality": "plurality_vote"}
_D = AnalysisSpec  # every default below is the spec's (class attributes of the dataclass)
_DEST = {"vendi_q": "vendi_order"}


def _label(text: str) -> tuple[str, str]:
    ds, sep, label = text.partition("=")
    if not sep or not ds.strip() or not label.strip():
        raise argparse.ArgumentTypeError(f"expected DATASET_ID=LABEL; got {text!r}")
    return ds.strip(), label.strip()


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
    io.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        dest="labels",
        metavar="ID=TEXT",
        help="human label of a dataset for figures and the LaTeX table, e.g. "
        "--label rereading/gsm8k=GSM8K; repeatable; recorded in every sidecar",
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
        "--judge-baseline",
        default=None,
        metavar="FILE",
        help="judge-scored data (e.g. AlpacaEval): the baseline outputs the judge compared "
        "against (question_id, output); writes win_rates.* (each model's win rate and "
        "length-controlled win rate, by the alpaca-eval package's own code, offline)",
    )
    meas.add_argument(
        "--lc-reference",
        default=None,
        metavar="DIR",
        help="folder holding alpaca-eval's df_gamed.csv, the LC GLM's input (default: the "
        "local Hugging Face cache; nothing is downloaded; without it, win rates only)",
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
        choices=EMBEDDING_DTYPES,
        default=_D.embedding_dtype,
        help="embedding precision/backend; auto (default): the fastest of float32, bfloat16 "
        "and (if installed) openvino that agrees with float32 on a probe of the data (min "
        "cosine >= 0.999), keeping a backend the cache already holds; recorded in the sidecars. "
        "float32 gives the same numbers on every machine",
    )
    emb.add_argument(
        "--embedding-long-texts",
        choices=LONG_TEXT_MODES,
        default=_D.embedding_long_texts,
        help="texts longer than the model's window: truncate (the model cuts them; the share "
        "is reported) or chunk (split at the window, chunk vectors mean-pooled: embedded whole)",
    )
    emb.add_argument(
        "--embedding-devices",
        type=_device_list,
        default=_D.embedding_devices,
        metavar="DEV,DEV[,...]",
        help="embed with one process per device (sentence-transformers multi-process pool), "
        "e.g. cuda:0,cuda:1 or cpu,cpu",
    )
    emb.add_argument(
        "--embedding-cluster",
        default=_D.embedding_cluster,
        metavar="ADDRESS",
        help="embed on a Dask cluster: a scheduler address (tcp://host:8786) or local:N "
        "(N local worker processes); needs pip install 'qdanalysis[cluster]'",
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
        "--ci",
        default=_D.ci,
        choices=tuple(CI_METHODS),
        help="intervals and p-values of the console, fig_coefficients and coefficients.*: "
        "'ols' (--cov-type; plain OLS by default, the paper's), 'hc3', 'cluster' (clustered on "
        "the questions the configurations share) or 'bootstrap' (over questions; --bootstrap N "
        f"replicates, default {_D.n_boot}). p-values are t-based (df n-k; G-1 when clustered on "
        "G questions); bootstrap ones never fall below 1/B",
    )
    reg.add_argument(
        "--cov-type",
        default=_D.cov_type,
        choices=("nonrobust", "HC0", "HC1", "HC2", "HC3"),
        help="OLS covariance of --ci ols; nonrobust is the paper's plain OLS. uncertainty.* "
        "always lists nonrobust, HC3 and question-clustered (and this one) side by side",
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
        "alpha-beta, R2, in uncertainty.*; also the replicates of --ci bootstrap); 0 = off",
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


def _p(row: Any) -> str:
    """A coefficient row's p-value for the console (``< 1/B`` at the bootstrap floor)."""
    return format_p(float(row["p_value"]), floor=bool(row.get("p_floor", False)))


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
            f"{_p(a):>9}   {b['estimate']:>7.3f} {b['std_error']:>6.3f} "
            f"{_p(b):>9}   {a['r2']:>6.3f}  "
            f"{(_p(w) if w is not None else 'nan'):>9}  "
            f"{a['corr_quality_diversity']:>6.3f}"
        )
    return "\n".join(lines)


def _format_intervals(coefs: Any) -> str:
    """alpha and beta with their intervals, standardised and in raw units, per dataset."""
    lines = []
    for ds, g in coefs.groupby("dataset", sort=True):
        t = g.set_index("term")
        parts = []
        for term, name in (("quality_z", "alpha"), ("diversity_z", "beta")):
            r = t.loc[term]
            parts.append(
                f"{name} {r['estimate']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}] per SD = "
                f"{r['estimate_raw']:.3g} [{r['ci_low_raw']:.3g}, {r['ci_high_raw']:.3g}] "
                f"{r['unit_raw']}"
            )
        lines.append(f"  {ds}: " + "; ".join(parts))
    return "\n".join(lines)


def _format_pair_model(pm: Any) -> str:
    """The pair-level model's alpha and beta per dataset, one line each."""
    lines = []
    for ds, g in pm.groupby("dataset", sort=True):
        t = g.set_index("term")
        a, b = t.loc["quality_z"], t.loc["diversity_z"]
        lines.append(
            f"  {ds}: alpha {a['estimate']:.3g} [{a['ci_low']:.3g}, {a['ci_high']:.3g}] "
            f"p {format_p(a['p_value'])}; beta {b['estimate']:.3g} [{b['ci_low']:.3g}, "
            f"{b['ci_high']:.3g}] p {format_p(b['p_value'])} ({int(a['n_pairs'])} pairs, "
            f"{int(a['n_questions'])} questions)"
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


def _device_list(text: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    if len(devices) < 2:
        raise argparse.ArgumentTypeError(
            f"expected two or more comma-separated devices (cuda:0,cuda:1 or cpu,cpu); got {text!r}"
        )
    return devices


def build_spec(args: argparse.Namespace) -> AnalysisSpec:
    """The :class:`~qdanalysis.analysis.pipeline.AnalysisSpec` of parsed ``fit`` arguments."""
    # Every spec field has an option of the same name, except vendi_q (--vendi-order).
    # performance_sha256 is computed from the file (no option).
    # n_boot is --bootstrap when given (0 = the spec's default).
    skip = ("performance_sha256", "n_boot")
    names = [f.name for f in fields(AnalysisSpec) if f.name not in skip]
    values = {n: getattr(args, _DEST.get(n, n)) for n in names}
    values["n_boot"] = args.bootstrap or AnalysisSpec.n_boot
    values["labels"] = tuple(args.labels)
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
    "read_baseline": "--judge-baseline",
    "judge_annotations": "--judge-baseline",
    "reference_dir": "--lc-reference",
    "AnalysisSpec.labels": "--label",
    "ci:": "--ci/--cov-type",
    "AnalysisSpec.ci": "--ci",
}


def _win_rates(args: argparse.Namespace, outputs: Any) -> Any:
    """The --judge-baseline table, computed before any embedding (None without the flag)."""
    if not args.judge_baseline:
        return None
    from ..analysis.methods import single_model_table
    from ..analysis.winrate import glm_reference_path, read_baseline

    lc = True
    try:
        baseline = read_baseline(args.judge_baseline)
        if args.lc_reference is None:
            try:
                glm_reference_path(None)
            except DataError as exc:
                lc = False
                warnings.warn(f"win_rates: no LC win rate. {exc}", DataWarning, stacklevel=2)
        return single_model_table(
            outputs,
            proposer_key=build_spec(args).proposer_key,
            baseline=baseline,
            length_controlled=lc,
            reference_dir=args.lc_reference,
        )
    except QDAnalysisError as exc:
        raise _with_flags(exc) from exc.__cause__


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


def _report(res: Any, tables: dict[str, Any], written: list[Path], elapsed_s: float) -> None:
    emb, params = res.embeddings, res.parameters
    print(  # noqa: T201  (CLI output)
        f"Performance ~ z(quality) + z(diversity), OLS per dataset (95% CI and p: "
        f"{CI_METHODS[res.spec.ci]}; cov_type={res.spec.cov_type}; "
        f"quality={params['quality']}; aggregator={params['aggregator']}; Vendi "
        f"q={params['vendi_q']}; embeddings {emb.model}):"
    )
    if params.get("score_scale") == "continuous":
        print(  # noqa: T201
            "correct holds continuous scores: performance and quality are mean scores (×100), "
            "not accuracies (%)"
        )
    print(_format_summary(res.coefficients))  # noqa: T201
    print("\nintervals, standardised and in raw units:")  # noqa: T201
    print(_format_intervals(res.coefficients))  # noqa: T201
    print(  # noqa: T201
        "\npair-level model (score of each configuration on each question ~ z(quality) + "
        "z(diversity) of the pair + question effects; question-clustered 95% CI):"
    )
    print(_format_pair_model(tables["pair_model"]))  # noqa: T201
    print(  # noqa: T201
        f"\nembedded {emb.n_embedded} texts ({emb.n_cached} from cache, {emb.n_truncated} "
        f"truncated at {emb.max_seq_length} tokens) in {res.timings['embed_s']:.1f} s "
        f"[{params.get('embedding_dtype')}, {emb.extra.get('long_texts', 'truncate')}]; total "
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
    win_rates = _win_rates(args, outputs)
    res, tables, fit_warnings = _analyze(args, outputs)
    params = dict(res.parameters)
    if win_rates is not None:
        # The baseline is recorded as a parameter with its hash, not among the outputs files
        # (the report loads those as outputs tables).
        from .._hashing import file_sha256

        tables["win_rates"] = win_rates
        params["judge_baseline"] = str(args.judge_baseline)
        params["judge_baseline_sha256"] = file_sha256(args.judge_baseline)
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
    _report(res, tables, written, time.perf_counter() - t0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    return run_main(lambda a: _run(a, argv), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
