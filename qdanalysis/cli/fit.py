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

from .._io import staged_dir
from ..analysis.pipeline import AnalysisSpec
from ..analysis.regression import CI_METHODS, format_p
from ..errors import ConfigError, DataError, QDAnalysisError, QDAnalysisWarning
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
    "AnalysisSpec.labels": "--label",
    "ci:": "--ci/--cov-type",
    "AnalysisSpec.ci": "--ci",
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


def _stat_tables(res: Any, outputs: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every table of the run, computed before anything is written, by stem."""
    from ..analysis.uncertainty import (
        bootstrap_coefs,
        diagnostics_table,
        pair_model_table,
        r2_table,
        uncertainty_table,
    )

    spec = res.spec
    boot = res.bootstrap  # the analysis's own, with --ci bootstrap (the same replicates)
    if boot is None and args.bootstrap:
        boot = bootstrap_coefs(
            res, n_boot=args.bootstrap, seed=args.bootstrap_seed, progress=not args.no_progress
        )
    fit_table = res.fit_table
    covs = list(dict.fromkeys(["nonrobust", "HC3", "question_cluster", spec.cov_type]))
    unc = uncertainty_table(
        fit_table, cov_types=covs, bootstrap=boot, ddof=spec.ddof, pairs=res.pairs
    )
    tables: dict[str, Any] = {
        "uncertainty": unc,
        "r2": r2_table(fit_table, ddof=spec.ddof),
        "diagnostics": diagnostics_table(fit_table),
        "pair_model": pair_model_table(res),
        "_boot": boot,
    }
    if args.sensitivity:
        from ..analysis.sensitivity import measure_table, sensitivity_table

        tables["sensitivity"] = sensitivity_table(measure_table(res, outputs), spec=spec)
    return tables


#: Axis-label texts of accuracies -> their wording for continuous scores (judge preferences).
_SCORE_UNITS = {
    "accuracy points": "score points (×100)",
    "mean accuracy": "mean score",
    "accuracy (%)": "mean score (×100)",
    "(%)": "(×100)",
}


def _score_units(fig: Any) -> None:
    """Relabel a figure's axes for continuous scores: they are mean scores ×100, not %."""
    for ax in fig.axes:
        for get, put in ((ax.get_xlabel, ax.set_xlabel), (ax.get_ylabel, ax.set_ylabel)):
            text = get()
            for old, new in _SCORE_UNITS.items():
                text = text.replace(old, new)
            put(text)


def _save_figures(res: Any, unc: Any, stage: Path, prov: Any, width: str) -> list[Path]:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from ..analysis.export import save_figure
    from ..analysis.paper import paper_rows
    from ..analysis.plotting import (
        coefficient_figure,
        dataset_labels,
        figure,
        forest_figure,
        paper_style,
        plot_residuals,
        qd_scatter_figure,
        settings_note,
    )
    from ..analysis.regression import CI_METHODS
    from ..analysis.uncertainty import residual_frame

    qd, labels = res.qd_table, dict(res.spec.labels)
    rows, one_line = dataset_labels(qd, labels), dataset_labels(qd, labels, sep="; ")
    note = settings_note(qd, ci=res.spec.ci)
    written: list[Path] = []
    with paper_style():
        figs = {
            "fig_coefficients": coefficient_figure(
                res.coefficients,
                reference=paper_rows(sorted(qd["dataset"].unique())),
                width=width,
                group_labels=rows,
                ci_label=f"95% CI: {CI_METHODS[res.spec.ci]}",
                note=note,
            ),
            "fig_uncertainty": forest_figure(
                unc, width="double", group_labels=rows, note=note.split("; 95% CI")[0]
            ),
            "fig_qd_scatter": qd_scatter_figure(qd, width="double", titles=rows, note=note),
        }
        names = sorted(qd["dataset"].unique())
        fig, ax = figure(width="double", height=2.0, ncols=len(names))
        resid = residual_frame(res.fits)
        for a, ds in zip(ax[0], names, strict=True):
            plot_residuals(resid, dataset=ds, ax=a)
            a.set_title(one_line[ds], fontsize=6)
        fig.suptitle(note.split("; 95% CI")[0], fontsize=6, color="0.3")
        figs["fig_residuals"] = fig
        for stem, f in figs.items():
            if res.parameters.get("score_scale") == "continuous":
                _score_units(f)
            written += save_figure(f, stem, out_dir=stage, provenance=prov)
            plt.close(f)
    return written


def _save_all(
    res: Any, tables: dict[str, Any], out: Path, prov: Any, args: argparse.Namespace
) -> list[Path]:
    """Write every artifact into a staging directory and publish them together."""
    from ..analysis.export import save_table

    fmts = list(dict.fromkeys(args.formats))
    boot = tables["_boot"]
    with staged_dir(out) as stage:
        written = save_table(res.qd_table, "qd_table", out_dir=stage, provenance=prov)
        written += save_table(
            res.pairs, "pairs", out_dir=stage, formats=["parquet"], provenance=prov
        )
        written += save_table(
            res.coefficients, "coefficients", out_dir=stage, formats=fmts, provenance=prov
        )
        for stem in ("uncertainty", "r2", "diagnostics", "pair_model"):
            written += save_table(tables[stem], stem, out_dir=stage, formats=fmts, provenance=prov)
        if "tex" in fmts:
            written += _save_latex_table(res, stage, prov)
        if boot is not None:
            written += save_table(boot.draws, "bootstrap_draws", out_dir=stage, provenance=prov)
        if "sensitivity" in tables:
            written += save_table(
                tables["sensitivity"], "sensitivity", out_dir=stage, formats=fmts, provenance=prov
            )
        if not args.no_figures:
            written += _save_figures(res, tables["uncertainty"], stage, prov, args.width)
    return [out / w.name for w in written]


def _latex_caption(res: Any) -> str:
    """The settings note of the compact LaTeX table (plain text; escaped when written)."""
    from ..analysis.regression import CI_METHODS, P_VALUE_CONVENTION

    qd, p = res.qd_table, res.parameters
    props = "/".join(str(int(k)) for k in sorted(qd["n_proposers"].unique()))
    return (
        "Performance ~ alpha z(quality) + beta z(diversity) + gamma, OLS per dataset, "
        "coefficients in points per SD with 95% intervals "
        f"({CI_METHODS[res.spec.ci]}); p-values: {P_VALUE_CONVENTION}. Aggregator "
        f"{', '.join(sorted(map(str, qd['aggregator'].unique())))}; {props} proposers per "
        f"configuration; quality={p['quality']}; Vendi q={p['vendi_q']}; embeddings "
        f"{res.embeddings.model}. Indented rows: the paper's Table 4 for the same benchmark "
        "(+-1.96 x its reported +-)."
    )


def _save_latex_table(res: Any, stage: Path, prov: Any) -> list[Path]:
    """``coefficients_paper.tex``: the compact alpha/beta/CI/R2 table, with its sidecar."""
    from ..analysis.export import latex_coefficient_table, save_text
    from ..analysis.paper import paper_rows

    text = latex_coefficient_table(
        res.coefficients,
        caption=_latex_caption(res),
        labels=dict(res.spec.labels),
        reference=paper_rows(sorted(res.qd_table["dataset"].unique())),
    )
    return save_text(text, "coefficients_paper", ext="tex", out_dir=stage, provenance=prov)


def _report(res: Any, tables: dict[str, Any], written: list[Path], elapsed_s: float) -> None:
    from ..analysis.regression import CI_METHODS

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
        f"truncated at {emb.max_seq_length} tokens) in {res.timings['embed_s']:.1f} s; total "
        f"{elapsed_s:.1f} s"
    )
    for w in written:
        print(f"wrote {w}")  # noqa: T201


def _analyze(args: argparse.Namespace, outputs: Any) -> tuple[Any, dict[str, Any], list[str]]:
    """The analysis and every table, with the warnings they raised (shown on stderr once the
    analysis ends or fails, and returned as lines for the report)."""
    from ..analysis.pipeline import analyze

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QDAnalysisWarning)
            spec = build_spec(args)
            cache: str | bool = False if args.no_cache else (args.cache_dir or True)
            res = analyze(outputs, spec, cache=cache, progress=not args.no_progress)
            tables = _stat_tables(res, outputs, args)
    except QDAnalysisError as exc:
        raise _with_flags(exc) from exc.__cause__
    finally:
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    lines = [str(w.message) for w in caught if issubclass(w.category, QDAnalysisWarning)]
    return res, tables, list(dict.fromkeys(lines))


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
    written = _save_all(res, tables, out, prov, args)
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
