"""Shared CLI plumbing: logging flags, the error boundary, output-directory checks.

Every CLI module (``fit``, ``run``, ``embed``) builds its parser with :func:`base_parser` and runs
its body inside :func:`run_main`, which turns a :class:`~qdanalysis.errors.QDAnalysisError` into
one ``error: <message>`` line and exit code 1 (a traceback only with ``--debug``), a usage error
into exit 2, and Ctrl-C into exit 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from ..errors import ConfigError, QDAnalysisError, QDAnalysisWarning

__all__ = [
    "base_parser",
    "check_out_dir",
    "run_main",
    "setup_logging",
]

log = logging.getLogger("qdanalysis")


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with ``-v``, ``-q`` and ``--debug`` already added."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = parser.add_argument_group("logging")
    g.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr at WARNING (``-q``), INFO (default) or DEBUG (``-vv``)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("qdanalysis")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def run_main(
    body: Callable[[argparse.Namespace], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv``, set up logging and run ``body`` behind the error boundary.

    Returns
    -------
    int
        ``body``'s exit code; 1 on a qdanalysis error, 2 on a usage error, 130 on Ctrl-C.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else 2
    setup_logging(args.verbose, args.quiet)
    try:
        with warnings.catch_warnings():
            # Our warnings describe the data; a CLI shows each one once as a line on stderr.
            warnings.simplefilter("always", QDAnalysisWarning)
            warnings.showwarning = _show_warning
            return body(args)
    except QDAnalysisError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201  (the CLI boundary)
        return 1
    except OSError as exc:  # disk full, permissions, a path that is a file: not our bug
        if args.debug:
            raise
        print(  # noqa: T201
            f"error: {exc}. Check the path, its permissions and the free disk space.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume.", file=sys.stderr)  # noqa: T201
        return 130


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    print(f"warning: {message}", file=sys.stderr)  # noqa: T201  (the CLI boundary)


def check_out_dir(path: str | Path, *, option: str = "--out-dir") -> Path:
    """Fail early (before any work) when ``path`` cannot become an output directory.

    Raises
    ------
    ConfigError
        If ``path`` or one of its parents is a file, or the nearest existing one is not writable.
    """
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ConfigError(
                    f"{option}: expected a directory; got {str(path)!r}, where {str(q)!r} is a "
                    "file. Choose another directory or move the file."
                )
            if not os.access(q, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"{option}: expected a writable directory; {str(q)!r} is not writable. "
                    "Choose another directory or fix its permissions."
                )
            break
    return p
