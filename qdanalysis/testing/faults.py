"""Fault injection for tests of clients' error handling: a backend wrapper that fails on cue.

Wrap any backend with ``complete_n`` in :class:`FaultyBackend` and serve it with
:func:`qdanalysis.runner.llm.server.create_app`: the first ``count`` chat calls fail with the
:class:`~qdanalysis.errors.ProviderError` that the server turns into HTTP ``status`` (429 with
``Retry-After``, 5xx, other 4xx), and ``ignore_n`` answers one choice whatever ``n`` asks, like
servers that ignore it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..errors import ProviderError
from ..runner.llm.base import ChatRequest, ChatResponse

__all__ = ["FaultSpec", "FaultyBackend"]


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """Faults to inject."""

    status: int | None = None
    """HTTP status of injected failures (e.g. 429, 500); ``None`` injects none."""
    count: int = 0
    """How many chat calls, the first ones, fail."""
    retry_after: float | None = None
    """``Retry-After`` header value in seconds sent with 429 failures."""
    ignore_n: bool = False
    """Return one choice whatever ``n`` asks."""

    def error(self, call: int) -> ProviderError:
        """The error of injected failure number ``call`` (1-based)."""
        message = f"injected fault {call}/{self.count}"
        status = self.status
        kind = "rate_limit" if status == 429 else "transient" if (status or 0) >= 500 else "fatal"
        return ProviderError(message, kind=kind, retry_after=self.retry_after, status=status)


class FaultyBackend:
    """A backend that fails its first ``faults.count`` calls, then delegates to ``backend``."""

    def __init__(self, backend: Any, faults: FaultSpec) -> None:
        self.backend = backend
        self.faults = faults
        self.calls = 0
        self._lock = threading.Lock()

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Fail on cue, else ``backend.complete_n`` (with ``n = 1`` under ``ignore_n``)."""
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.faults.status is not None and call <= self.faults.count:
            raise self.faults.error(call)
        out: list[ChatResponse] = await self.backend.complete_n(
            request, 1 if self.faults.ignore_n else n
        )
        return out
