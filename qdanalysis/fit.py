"""``python -m qdanalysis.fit``: a shim into :mod:`qdanalysis.cli.fit`."""

from __future__ import annotations

from .cli.fit import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
