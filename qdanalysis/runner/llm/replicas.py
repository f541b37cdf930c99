"""One model served by several OpenAI-compatible replicas (data parallelism across servers).

A cluster runs one inference server per GPU or node (``vllm serve`` with ``--data-parallel-size``
on one node, or one server per node); :class:`ReplicaClient` spreads the calls of one model over
their base URLs: each call goes to the replica with the fewest calls in flight (ties in turn), and
a replica that cannot be reached (connection refused, timeout, HTTP 5xx) is skipped for
``cooldown_s`` while the call moves to the next one. All replicas must serve the same weights
under the same model id: they share one endpoint string, so cache keys and run stores do not
depend on which replica answered.

In a study, an ``openai`` model lists its extra replicas in ``options``::

    [models.qwen]
    backend = "openai"
    base_url = "http://node1:8000/v1"
    options = { replicas = ["http://node2:8000/v1", "http://node3:8000/v1"] }

Neighbours: :mod:`qdanalysis.runner.llm.openai_compat` talks to each replica;
:mod:`qdanalysis.runner.llm.backends` builds this client from a model's endpoint spec.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ...errors import AuthError, ConfigError, ProviderError
from .base import ChatRequest, ChatResponse, ping

__all__ = ["ReplicaClient", "replica_endpoint"]

logger = logging.getLogger(__name__)


def replica_endpoint(base_urls: Sequence[str]) -> str:
    """The one endpoint string of a replica set (order-free).

    Examples
    --------
    >>> replica_endpoint(["http://b/v1", "http://a/v1"])
    'replicas(http://a/v1|http://b/v1)'
    """
    return "replicas(" + "|".join(sorted(u.rstrip("/") for u in base_urls)) + ")"


class ReplicaClient:
    """A chat client spreading calls over several OpenAI-compatible servers of one model.

    Parameters
    ----------
    base_urls
        The replicas' API roots (``http://HOST:PORT/v1``), at least one, no repeats.
    api_key_env
        NAME of the variable holding the key (the same for every replica), or None.
    timeout_s
        HTTP timeout of one attempt.
    cooldown_s
        How long a replica that failed to answer is skipped.
    clients
        Prebuilt clients, one per URL (tests); default :class:`OpenAICompatClient` each.

    Raises
    ------
    ConfigError
        If ``base_urls`` is empty or repeats a URL.
    """

    supports_n = True

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        api_key_env: str | None = None,
        timeout_s: float = 600.0,
        cooldown_s: float = 30.0,
        clients: Sequence[Any] | None = None,
    ) -> None:
        urls = [str(u).rstrip("/") for u in base_urls]
        if not urls or len(set(urls)) != len(urls):
            raise ConfigError(
                f"ReplicaClient base_urls: expected one or more distinct URLs; got {base_urls!r}."
            )
        if clients is None:
            from .openai_compat import OpenAICompatClient

            clients = [
                OpenAICompatClient(u, api_key_env=api_key_env, timeout_s=timeout_s) for u in urls
            ]
        if len(clients) != len(urls):
            raise ConfigError(
                f"ReplicaClient clients: expected one per URL ({len(urls)}); got {len(clients)}."
            )
        self.base_urls = tuple(urls)
        self.clients = list(clients)
        self.endpoint = replica_endpoint(urls)
        self.cooldown_s = cooldown_s
        self.in_flight = [0] * len(urls)
        self.calls = [0] * len(urls)
        self._down_until = [0.0] * len(urls)
        self._turn = 0

    def __repr__(self) -> str:
        return f"ReplicaClient({list(self.base_urls)!r})"

    def _order(self) -> list[int]:
        """Replica indices to try: reachable ones by load, then those cooling down."""
        now = time.monotonic()
        k = len(self.clients)
        start, self._turn = self._turn, (self._turn + 1) % k
        turn = [(start + j) % k for j in range(k)]
        up = sorted((i for i in turn if self._down_until[i] <= now), key=self.in_flight.__getitem__)
        return up + [i for i in turn if self._down_until[i] > now]

    async def _call(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        last: ProviderError | None = None
        for i in self._order():
            self.in_flight[i] += 1
            self.calls[i] += 1
            try:
                return await fn(self.clients[i])
            except AuthError:
                raise
            except ProviderError as exc:
                if exc.kind != "transient":
                    raise
                self._down_until[i] = time.monotonic() + self.cooldown_s
                last = exc
            finally:
                self.in_flight[i] -= 1
        assert last is not None
        raise ProviderError(
            f"{self.endpoint}: every replica failed; last: {last}", kind="transient"
        ) from None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One completion from the least-loaded reachable replica."""
        out: ChatResponse = await self._call(lambda c: c.complete(request))
        return out

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """``n`` samples in one call to one replica (so seeded samples stay one request)."""
        out: list[ChatResponse] = await self._call(lambda c: c.complete_n(request, n))
        return out

    async def ping(self) -> None:
        """Check every replica: those that do not answer are skipped for ``cooldown_s``.

        Raises
        ------
        ProviderError
            If no replica answers (the message names the first failure).
        """
        results = await asyncio.gather(*(ping(c) for c in self.clients), return_exceptions=True)
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        for i, r in failed:
            if not isinstance(r, ProviderError):
                raise r
            logger.warning(
                "%s: replica %s does not answer: %s", self.endpoint, self.base_urls[i], r
            )
            self._down_until[i] = time.monotonic() + self.cooldown_s
        if len(failed) == len(self.clients):
            raise failed[0][1]

    async def aclose(self) -> None:
        """Close every replica's client."""
        for c in self.clients:
            close = getattr(c, "aclose", None)
            if callable(close):
                await close()
