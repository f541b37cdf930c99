"""``python -m qdanalysis.run``: a shim into :mod:`qdanalysis.cli.run`."""

from __future__ import annotations

from .cli.run import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
