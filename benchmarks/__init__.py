"""Benchmarks of qdanalysis: every figure a ratio to a baseline measured in the same run.

Run all of them with ``python -m benchmarks`` (``--quick`` for a smoke run); results go to
``benchmarks/results/results.csv`` and ``results.md``. See ``benchmarks/README.md``.
"""
