"""CLI: one resumable command for a whole study described by a TOML file.

``python -m qdanalysis.study STUDY.toml`` generates every proposer sample once, runs every
aggregator call, fits and writes the tables and figures (see
:func:`qdanalysis.studies.run_study`); ``--dry-run`` prints the calls and tokens it would ask
for, per model and role, and stops. Rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..studies import StudyResult, load_study, run_study
from ..studies.plan import CHARS_PER_TOKEN
from ._common import base_parser, run_main
from .run import EXIT_ALL_FAILED, EXIT_SOME_FAILED, _report_failures

__all__ = ["build_parser", "exit_code", "main"]

_EPILOG = (
    "exit codes: 0 every call answered (and the fit was written); 1 error before generating "
    "(a bad study file, names its file, line and key; bad questions; an endpoint that does not "
    "answer; a store made with other settings); 2 usage; "
    f"{EXIT_SOME_FAILED} some calls failed (stored as error rows, no fit; rerun to retry them); "
    f"{EXIT_ALL_FAILED} every call failed; 130 interrupted (rerun to resume). "
    "Files under the study's out folder: study.toml and study.json (the settings), configs.jsonl, "
    "store/ (rows.jsonl, run.json), cache.sqlite, outputs.jsonl, usage.jsonl (one line per "
    "invocation), fit/ (qd_table, pairs, coefficients, uncertainty, r2, diagnostics, "
    "run_methods, usage, figures, each with a .json sidecar; report.html with --report)."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` documents every option and the TOML's tables)."""
    p = base_parser(
        "python -m qdanalysis.study",
        "Run a whole Mixture-of-Agents quality-diversity study from one TOML file: models "
        "(each with its own backend and endpoint: [models.NAME] backend = openai|vllm|hf|mock, "
        "base_url, api_key_env, served_model, concurrency, requests_per_minute, temperature), "
        "questions ([task]), the shared proposer pool ([[proposers.pool]] model, samples, "
        "temperature; [proposers] max_tokens, timeout_s), the configurations ([design] n, "
        "max_configs, seed, design, methods, compositions, self_moa_seq, baselines), the "
        "aggregators ([[aggregation.aggregators]] model, prompt, temperature; [aggregation] "
        "max_tokens, timeout_s, on_proposer_error, min_references) and the analysis "
        "([analysis] embedding_model, vendi_q, cov_type, bootstrap, report, ...). Generates "
        "every proposer sample once, runs every aggregator call, fits performance ~ "
        "z(quality) + z(diversity) on the LLM-aggregated configurations and writes tables and "
        "figures. Rerun the same command to resume: no stored request is asked again.",
    )
    p.epilog = _EPILOG
    p.add_argument("study", type=Path, metavar="STUDY.toml", help="the study file")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the calls (exact) and tokens (estimated) per model and role that the "
        "study would ask for, leaving out rows already stored, and stop: nothing is asked "
        "or written",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="also write fit/report.html, the interactive HTML report (as analysis.report = "
        "true in the file)",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (overrides [study] out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "  (none)"
    return str(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _print_estimate(res: StudyResult) -> None:
    est = res.estimate
    print(  # noqa: T201  (CLI output)
        f"study {res.spec.name}: {res.n_questions} questions, {res.n_configs} configurations"
    )
    print(  # noqa: T201
        "calls it will ask for (exact, one per completion; a backend drawing n samples of a "
        "prompt in one request makes fewer HTTP requests; stored rows left out) and tokens "
        "(an estimate: prompts "
        f"at {CHARS_PER_TOKEN:g} characters per token, completions at their max_tokens limit):"
    )
    print(_table(est))  # noqa: T201
    if not est.empty:
        print(  # noqa: T201
            f"total: {int(est['calls'].sum())} calls, ~{int(est['prompt_tokens_est'].sum())} "
            f"prompt tokens, <= {int(est['completion_tokens_max'].sum())} completion tokens"
        )


def _print_result(res: StudyResult) -> None:
    from .fit import _format_summary

    print(f"summary: {res.summary}")  # noqa: T201
    print("usage of this invocation per model and role (from the usage ledgers):")  # noqa: T201
    print(_table(res.usage))  # noqa: T201
    if res.analysis is not None:
        print(_format_summary(res.analysis.coefficients))  # noqa: T201
    if res.fit_skipped:
        print(f"fit skipped: {res.fit_skipped}", file=sys.stderr)  # noqa: T201
    for w in res.written:
        print(f"wrote {w}")  # noqa: T201


def exit_code(res: StudyResult) -> int:
    """0 when nothing failed, else :data:`EXIT_SOME_FAILED` or :data:`EXIT_ALL_FAILED`."""
    s = res.summary
    if s is None or not (s.n_errors or s.n_failed_configs):
        return 0
    return EXIT_ALL_FAILED if s.all_failed else EXIT_SOME_FAILED


def _body(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import dataclasses

    spec = load_study(args.study)
    if args.out is not None:
        spec = dataclasses.replace(spec, out=str(args.out.resolve()))
    used = list(argv) if argv is not None else sys.argv[1:]
    if args.dry_run:
        res = run_study(spec, dry_run=True, progress=False)
        _print_estimate(res)
        return 0
    res = run_study(
        spec, progress=not args.no_progress, report=True if args.report else None, argv=used
    )
    _print_estimate(res)
    _print_result(res)
    code = exit_code(res)
    if code and res.summary is not None:
        _report_failures(res.summary)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 3 some calls failed, 4 every
    call failed, 130 interrupted)."""
    return run_main(lambda a: _body(a, argv), build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
