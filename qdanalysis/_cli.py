"""Shared CLI plumbing: logging flags, the error boundary, atomic file writes.

Every CLI module (``fit``, ``run``, ``embed``) builds its parser with :func:`base_parser` and runs
its body inside :func:`run_main`, which turns a :class:`~qdanalysis.errors.QDAnalysisError` into
one ``error: <message>`` line and exit code 1 (a traceback only with ``--debug``), a usage error
into exit 2, and Ctrl-C into exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, QDAnalysisError, QDAnalysisWarning

__all__ = [
    "atomic_path",
    "atomic_write",
    "base_parser",
    "check_out_dir",
    "run_main",
    "setup_logging",
    "staged_dir",
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


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory inside ``out_dir``; publish its files only on success.

    Artifacts are written into the staging directory; when the block ends without an exception
    each file is renamed into ``out_dir`` (each rename atomic, so readers only ever see whole
    files). On an exception the staging directory is deleted and ``out_dir`` keeps exactly the
    files it had (and is removed again if this call created it), so a failed run leaves no
    partial artifacts.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield stage
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that atomically replaces ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
