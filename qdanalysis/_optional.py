"""Lazy imports of optional heavy dependencies with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip command.

    Parameters
    ----------
    module
        Dotted module name, e.g. ``"sentence_transformers"``.
    extra
        The qdanalysis extra that installs it, e.g. ``"embed"``.
    purpose
        What the module is needed for, for the message.

    Raises
    ------
    MissingDependencyError
        If the import fails.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"optional dependency {module!r} is not installed{why}; "
            f"got ImportError: {exc}. Install it with: pip install 'qdanalysis[{extra}]'"
        ) from exc
