"""``python -m qdanalysis.study``: a shim into :mod:`qdanalysis.cli.study`."""

from __future__ import annotations

from .cli.study import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
