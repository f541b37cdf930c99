"""qdanalysis: quality and diversity of Mixture-of-Agents LLM ensembles.

Run MoA ensembles, build proposer configurations, measure each configuration's quality
(mean proposer accuracy), diversity (Vendi Score of output embeddings) and performance
(ensemble accuracy), and regress performance on standardised quality and diversity.

``import qdanalysis`` is cheap: torch, transformers, openai and vllm load only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors as _errors
from .errors import *  # noqa: F403  (the error and warning classes; errors.__all__ lists them)

# The outputs loader needs pandas (~0.4 s to import): load it on first use (PEP 562).
_LAZY = {"OUTPUTS_SCHEMA": "outputs", "load_outputs": "outputs", "validate_outputs": "outputs"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["__version__", *_LAZY, *_errors.__all__]
