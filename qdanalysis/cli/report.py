"""CLI: the interactive HTML report of a fit output directory.

``python -m qdanalysis.report DIR`` writes ``DIR/report.html`` (and ``report.json``): one file
that opens from disk with no server and no network. See ``python -m qdanalysis.report --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._common import base_parser, run_main

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m qdanalysis.report``."""
    p = base_parser(
        "python -m qdanalysis.report",
        "Write one self-contained HTML page (data embedded, plotly inlined, no network) showing "
        "a fit's settings and provenance, alpha and beta beside the paper's Table 4, the "
        "interactive quality-diversity scatter, Self-MoA vs Mixed-MoA per dataset, each "
        "configuration's questions (proposer outputs, answers, aggregator), token and latency "
        "use, and the fit's warnings.",
    )
    p.add_argument("dir", metavar="DIR", help="what `python -m qdanalysis.fit --out-dir` wrote")
    p.add_argument(
        "--outputs",
        nargs="+",
        default=None,
        metavar="PATH",
        help="outputs files or directories for the per-question details (default: the inputs "
        "recorded in DIR/qd_table.json, checked against their SHA-256)",
    )
    p.add_argument("--out", default=None, help="the page to write (default: DIR/report.html)")
    p.add_argument(
        "--max-inline-mb",
        type=float,
        default=32.0,
        metavar="MB",
        help="above this many MiB of per-question details, keep them in a folder beside the page "
        "(<name>_files/, loaded on demand) instead of inside it",
    )
    return p


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from ..analysis.report import write_report

    page = write_report(
        args.dir,
        outputs=args.outputs,
        out=args.out,
        max_inline_bytes=int(args.max_inline_mb * 1024 * 1024),
        argv=list(argv) if argv is not None else sys.argv[1:],
    )
    print(f"wrote {page}")  # noqa: T201  (CLI output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    return run_main(lambda a: _run(a, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
