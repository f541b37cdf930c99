"""Serve MoA methods as OpenAI-compatible models (``python -m qdanalysis.serve``).

:func:`build_app` returns a FastAPI app whose ``/v1/models`` lists :class:`Ensemble` s and
whose ``/v1/chat/completions`` answers with one (:func:`run_ensemble`, over the runner's MoA
code and the managed client). See :mod:`qdanalysis.runner.serve.ensemble` for what each
request field means per role, and :mod:`qdanalysis.runner.serve.app` for limits and errors.
"""

from __future__ import annotations

from .app import ServeLimits, build_app
from .ensemble import ChatParams, Ensemble, EnsembleError, Served, ensemble_method, run_ensemble

__all__ = [
    "ChatParams",
    "Ensemble",
    "EnsembleError",
    "ServeLimits",
    "Served",
    "build_app",
    "ensemble_method",
    "run_ensemble",
]
