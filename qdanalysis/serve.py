"""``python -m qdanalysis.serve``: a shim into :mod:`qdanalysis.cli.serve`."""

from __future__ import annotations

from .cli.serve import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
