"""Exception and warning hierarchies of qdanalysis.

Every error the toolkit raises on purpose derives from :class:`QDAnalysisError` and from the
builtin it refines (``ValueError``, ``ImportError``, ``RuntimeError``), so callers can catch
either. Messages follow one template: ``"<where>: expected <what>; got <value!r>. <fix>"``.

Neighbours: every other module raises these; :mod:`qdanalysis.cli._common` turns them into one
``error: <message>`` line and exit code 1.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AuthError",
    "ConfigError",
    "DataError",
    "DataWarning",
    "MissingDependencyError",
    "ProviderError",
    "QDAnalysisError",
    "QDAnalysisWarning",
    "StatisticalWarning",
]


class QDAnalysisError(Exception):
    """Base class of every error raised on purpose by qdanalysis."""


class ConfigError(QDAnalysisError, ValueError):
    """An argument, option or specification is invalid."""


class DataError(QDAnalysisError, ValueError):
    """An input table or file is malformed.

    Parameters
    ----------
    message
        What is wrong and how to fix it.
    path
        The file the problem is in, if any.
    line
        1-based line number within ``path`` (JSONL, CSV), if known.
    column
        The column (field) name, if the problem is in one column.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.message = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class MissingDependencyError(QDAnalysisError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


class ProviderError(QDAnalysisError, RuntimeError):
    """A language-model backend failed.

    Parameters
    ----------
    message
        What happened (never containing an API key).
    kind
        ``"rate_limit"`` and ``"transient"`` are retried by the managed client;
        ``"fatal"`` is not.
    retry_after
        Seconds the server asked us to wait (``Retry-After``), if it said.
    status
        The HTTP status the error came with or should be served as, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "fatal",
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        if kind not in ("rate_limit", "transient", "fatal"):
            raise ValueError(
                f"ProviderError kind: expected 'rate_limit', 'transient' or 'fatal'; got {kind!r}."
            )
        self.kind = kind
        self.retry_after = retry_after
        self.status = status
        super().__init__(message)


class AuthError(ProviderError):
    """The backend rejected the credentials (HTTP 401/403); never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="fatal")


class QDAnalysisWarning(UserWarning):
    """Base class of the toolkit's warnings."""


class StatisticalWarning(QDAnalysisWarning):
    """A fit is numerically or statistically fragile (collinearity, few observations)."""


class DataWarning(QDAnalysisWarning):
    """Input data was altered or is incomplete (truncation, dropped pairs, empty outputs)."""
