"""ModelRouter: one chat client that sends each model name to its own backend.

Neighbours: ``python -m qdanalysis.run --model-path NAME=PATH`` builds one over local backends;
:class:`~qdanalysis.runner.llm.managed.ManagedClient` wraps it (cache keys and concurrency caps
use :meth:`ModelRouter.endpoint_for`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigError
from .base import ChatRequest, ChatResponse, ping, supports_n

__all__ = ["ModelRouter"]


class ModelRouter:
    """A chat client sending each model name to its own backend.

    Parameters
    ----------
    clients
        Model name -> backend. Key ``"*"`` serves every other name.

    Examples
    --------
    >>> from qdanalysis.testing import MockClient
    >>> r = ModelRouter({"*": MockClient(endpoint="e")})
    >>> r.endpoint_for("m")
    'e#m'
    """

    supports_n = True

    def __init__(self, clients: Mapping[str, Any]) -> None:
        if not clients:
            raise ConfigError("ModelRouter clients: expected at least one backend; got none.")
        self.clients = dict(clients)
        self.endpoint = (
            "router("
            + ",".join(f"{k}={getattr(c, 'endpoint', '?')}" for k, c in sorted(clients.items()))
            + ")"
        )

    def _client(self, model: str) -> Any:
        c = self.clients.get(model, self.clients.get("*"))
        if c is None:
            raise ConfigError(
                f"ModelRouter: expected a backend for model {model!r}; got backends for "
                f"{sorted(self.clients)}. Add one under its name (or '*')."
            )
        return c

    def endpoint_for(self, model: str) -> str:
        """The endpoint of the backend serving ``model`` (cache key and concurrency scope)."""
        return f"{self._client(model).endpoint}#{model}"

    async def ping(self) -> None:
        """Check every distinct backend (see :func:`~qdanalysis.runner.llm.base.ping`)."""
        distinct = {id(c): c for c in self.clients.values()}
        for c in distinct.values():
            await ping(c)

    async def aclose(self) -> None:
        """Close every backend that can be closed."""
        for c in {id(c): c for c in self.clients.values()}.values():
            close = getattr(c, "aclose", None)
            if callable(close):
                await close()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Forward to the backend serving ``request.model``."""
        resp: ChatResponse = await self._client(request.model).complete(request)
        return resp

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Forward ``n`` samples, one by one when the backend cannot batch them."""
        c = self._client(request.model)
        if supports_n(c):
            out: list[ChatResponse] = await c.complete_n(request, n)
            return out
        return list(
            await asyncio.gather(
                *(
                    c.complete(dataclasses.replace(request, sample_index=request.sample_index + j))
                    for j in range(n)
                )
            )
        )
