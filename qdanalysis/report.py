"""``python -m qdanalysis.report``: a shim into :mod:`qdanalysis.cli.report`."""

from __future__ import annotations

from .cli.report import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
