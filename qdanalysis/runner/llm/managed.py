"""The one fat wrapper around thin backends: retries, timeouts, concurrency, caching, accounting.

Backends (:mod:`~qdanalysis.runner.llm.openai_compat`, :mod:`~qdanalysis.runner.llm.hf_local`,
:mod:`~qdanalysis.runner.llm.vllm_offline`, test fakes) only translate and raise
:class:`~qdanalysis.errors.ProviderError`; :class:`ManagedClient` retries ``rate_limit`` and
``transient`` errors with jittered exponential backoff (honouring ``retry_after``), bounds each
attempt's time, caps in-flight calls per endpoint, reads and writes the
:class:`~qdanalysis.runner.llm.cache.ResponseCache` and books a
:class:`~qdanalysis.runner.llm.ledger.UsageLedger`.
MoA runners (:mod:`qdanalysis.runner.moa`) talk to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ...errors import ConfigError, ProviderError
from .base import ChatClient, ChatRequest, ChatResponse, contiguous_runs, ping, supports_n
from .cache import ResponseCache
from .ledger import CallRecord, UsageLedger

__all__ = ["ManagedClient", "RetryPolicy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
"""Module-level sleep used between retries; tests replace it (``no_retry_wait``)."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How :class:`ManagedClient` retries ``rate_limit`` and ``transient`` provider errors.

    Examples
    --------
    >>> p = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, jitter=0.0)
    >>> [p.delay_s(a) for a in (1, 2, 3, 4, 5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> p.delay_s(1, retry_after=3.0)
    3.0
    """

    max_attempts: int = 6
    """Attempts in all, the first included (1 disables retries)."""
    base_delay_s: float = 1.0
    """Delay before the first retry, doubled for each later one."""
    max_delay_s: float = 60.0
    """Cap of the backoff delay."""
    jitter: float = 0.5
    """Fraction of the delay drawn at random: delay × U(1 − jitter, 1)."""
    max_retry_after_s: float = 300.0
    """Cap on a server's ``Retry-After``; longer requests fail the call as is."""
    wait: bool = True
    """Sleep between attempts; ``False`` retries at once (tests)."""
    sleep: Callable[[float], Awaitable[None]] | None = None
    """Sleep function (default :func:`asyncio.sleep`); tests pass a recorder."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"RetryPolicy.max_attempts: expected >= 1; got {self.max_attempts!r}."
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter: expected in [0, 1]; got {self.jitter!r}.")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ConfigError(
                "RetryPolicy: expected non-negative delays; got "
                f"base_delay_s={self.base_delay_s!r}, max_delay_s={self.max_delay_s!r}."
            )

    def delay_s(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        A server's ``retry_after`` is honoured as is; otherwise the delay is
        ``min(max_delay_s, base_delay_s * 2 ** (attempt - 1))`` scaled by ``U(1 - jitter, 1)``.
        """
        if retry_after is not None and retry_after >= 0:
            return float(retry_after)
        delay = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        if self.jitter:
            delay *= (rng or random).uniform(1.0 - self.jitter, 1.0)
        return float(delay)


class ManagedClient:
    """A :class:`ChatClient` adding retries, timeouts, a concurrency cap, caching and accounting.

    Parameters
    ----------
    client
        The backend. If it has ``endpoint_for(model) -> str`` (a router over several backends),
        the cache key and concurrency cap use that per-model endpoint, else ``client.endpoint``.
    cache
        Response cache; ``None`` disables caching.
    max_concurrency
        Most calls in flight per endpoint.
    retry
        Retry policy for ``rate_limit`` and ``transient`` errors.
    timeout_s
        Limit of one attempt in seconds (``None``: no limit); an attempt past it counts as a
        ``transient`` error. In-process backends keep computing in their thread after a timeout.
    ledger
        Usage ledger to book into (a new one by default; see :attr:`ledger`).
    seed
        Seed of the backoff jitter.

    Notes
    -----
    Errors are never cached. A ``ProviderError`` that outlives its retries is booked with
    ``status="error"`` and re-raised; other exceptions propagate at once.
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        cache: ResponseCache | None = None,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = 600.0,
        ledger: UsageLedger | None = None,
        seed: int | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigError(
                f"ManagedClient max_concurrency: expected >= 1; got {max_concurrency!r}."
            )
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError(f"ManagedClient timeout_s: expected > 0 or None; got {timeout_s!r}.")
        self.client = client
        self.cache = cache
        self.max_concurrency = max_concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout_s = timeout_s
        self.ledger = ledger if ledger is not None else UsageLedger()
        self._rng = random.Random(seed)
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # ChatClient / MultiSampleClient surface -------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The wrapped backend's endpoint."""
        return str(self.client.endpoint)

    supports_n = True

    def __repr__(self) -> str:
        return (
            f"ManagedClient({self.client!r}, cache={self.cache!r}, "
            f"max_concurrency={self.max_concurrency}, timeout_s={self.timeout_s})"
        )

    async def ping(self) -> None:
        """Check that the backend's endpoint(s) answer (see :func:`~.base.ping`), once.

        Raises
        ------
        ProviderError
            If an endpoint does not answer within ``timeout_s``.
        """
        await self._with_timeout(lambda: ping(self.client))

    def endpoint_for(self, model: str) -> str:
        """The endpoint serving ``model`` (the cache key and concurrency scope)."""
        route = getattr(self.client, "endpoint_for", None)
        return str(route(model)) if callable(route) else self.endpoint

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One completion, from the cache or the backend.

        Raises
        ------
        ProviderError
            If the backend failed with a fatal error, or kept failing past the retry policy.
        """
        endpoint = self.endpoint_for(request.model)
        if self.cache is not None:
            hit = self.cache.get(endpoint, request)
            if hit is not None:
                self.ledger.record(
                    CallRecord(endpoint=endpoint, model=request.model, status="cached")
                )
                return hit
        (resp,) = await self._call(endpoint, request, 1, lambda: self.client.complete(request))
        return resp

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Samples ``request.sample_index`` to ``request.sample_index + n - 1`` of one prompt.

        Cached samples come from the cache; each contiguous run of missing samples is drawn in
        one backend call when the backend supports ``n``, else by separate concurrent requests.

        Raises
        ------
        ProviderError
            The first failure, after the samples that succeeded are cached.
        """
        if n < 1:
            raise ConfigError(f"ManagedClient.complete_n n: expected >= 1; got {n!r}.")
        endpoint = self.endpoint_for(request.model)
        reqs = [
            dataclasses.replace(request, sample_index=request.sample_index + j) for j in range(n)
        ]
        out: list[ChatResponse | None] = [None] * n
        if self.cache is not None:
            for j, r in enumerate(reqs):
                hit = self.cache.get(endpoint, r)
                if hit is not None:
                    out[j] = hit
                    self.ledger.record(
                        CallRecord(endpoint=endpoint, model=r.model, status="cached")
                    )
        missing = [j for j in range(n) if out[j] is None]
        if not missing:
            return [r for r in out if r is not None]

        jobs: list[tuple[list[int], Callable[[], Awaitable[list[ChatResponse]]]]] = []
        if supports_n(self.client):
            backend: Any = self.client
            for run in contiguous_runs(missing):
                first, size = reqs[run[0]], len(run)
                if size == 1:
                    jobs.append((run, _single(self.client, first)))
                else:
                    jobs.append((run, _batch(backend, first, size)))
        else:
            jobs = [([j], _single(self.client, reqs[j])) for j in missing]

        async def run_job(
            idx: list[int], fn: Callable[[], Awaitable[list[ChatResponse]]]
        ) -> list[ChatResponse]:
            return await self._call(
                endpoint, reqs[idx[0]], len(idx), fn, reqs=[reqs[j] for j in idx]
            )

        results = await asyncio.gather(*(run_job(i, f) for i, f in jobs), return_exceptions=True)
        first_error: BaseException | None = None
        for (idx, _), res in zip(jobs, results, strict=True):
            if isinstance(res, BaseException):
                first_error = first_error or res
                continue
            for j, resp in zip(idx, res, strict=True):
                out[j] = resp
        if first_error is not None:
            raise first_error
        return [r for r in out if r is not None]

    # internals -------------------------------------------------------------------------------
    def _semaphore(self, endpoint: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # semaphores bind to one event loop
            self._loop = loop
            self._semaphores = {}
        sem = self._semaphores.get(endpoint)
        if sem is None:
            sem = self._semaphores[endpoint] = asyncio.Semaphore(self.max_concurrency)
        return sem

    async def _call(
        self,
        endpoint: str,
        request: ChatRequest,
        n: int,
        fn: Callable[[], Awaitable[Any]],
        *,
        reqs: Sequence[ChatRequest] | None = None,
    ) -> list[ChatResponse]:
        """Run ``fn`` under the cap with retries; cache and book the result."""
        policy = self.retry
        sleep = policy.sleep or _sleep
        attempt = 0

        def record(**fields: Any) -> None:
            self.ledger.record(
                CallRecord(endpoint=endpoint, model=request.model, n_samples=n, **fields)
            )

        while True:
            attempt += 1
            try:
                async with self._semaphore(endpoint):
                    start = time.perf_counter()
                    raw = await self._with_timeout(fn)
                    latency = time.perf_counter() - start
                responses = _as_list(raw, n, endpoint)
                break
            except ProviderError as exc:
                retryable = exc.kind in ("rate_limit", "transient")
                too_long = (
                    exc.retry_after is not None and exc.retry_after > policy.max_retry_after_s
                )
                if not retryable or attempt >= policy.max_attempts or too_long:
                    record(status="error", retries=attempt - 1, error_kind=exc.kind)
                    logger.warning(
                        "%s %s: giving up after %d attempt(s): %s",
                        endpoint,
                        request.model,
                        attempt,
                        exc,
                    )
                    raise
                delay = policy.delay_s(attempt, retry_after=exc.retry_after, rng=self._rng)
                logger.info(
                    "%s %s: %s error (%s); retry %d in %.2f s",
                    endpoint,
                    request.model,
                    exc.kind,
                    exc,
                    attempt,
                    delay,
                )
                if policy.wait and delay > 0:
                    await sleep(delay)
        if self.cache is not None:
            for r, resp in zip(reqs or [request], responses, strict=True):
                self.cache.put(endpoint, r, resp)
        record(
            status="ok",
            prompt_tokens=responses[0].prompt_tokens or 0,
            completion_tokens=sum(r.completion_tokens or 0 for r in responses),
            latency_s=latency,
            retries=attempt - 1,
        )
        return responses

    async def _with_timeout(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self.timeout_s is None:
            return await fn()
        try:
            return await asyncio.wait_for(fn(), self.timeout_s)
        except TimeoutError as exc:
            raise ProviderError(
                f"{self.endpoint}: expected a response within {self.timeout_s} s; got none. "
                "Raise timeout_s or lower max_tokens.",
                kind="transient",
            ) from exc


def _single(client: ChatClient, request: ChatRequest) -> Callable[[], Awaitable[Any]]:
    return lambda: client.complete(request)


def _batch(client: Any, request: ChatRequest, n: int) -> Callable[[], Awaitable[Any]]:
    return lambda: client.complete_n(request, n)


#: Finish reasons of a generation the engine gave up on (vLLM: ``abort``, ``error``): the text
#: is no answer, so the call failed (retried, never cached, an error row if it keeps failing).
FAILED_FINISH_REASONS = ("abort", "error")


def _as_list(raw: Any, n: int, endpoint: str) -> list[ChatResponse]:
    items = [raw] if isinstance(raw, ChatResponse) else list(raw)
    if len(items) != n or not all(isinstance(r, ChatResponse) for r in items):
        raise ProviderError(
            f"{endpoint}: expected {n} ChatResponse(s) from the backend; got {raw!r}.",
            kind="fatal",
        )
    failed = [r.finish_reason for r in items if r.finish_reason in FAILED_FINISH_REASONS]
    if failed:
        raise ProviderError(
            f"{endpoint}: expected finished generations; got finish_reason {failed[0]!r} (the "
            "engine aborted or failed the request; is it still healthy?).",
            kind="transient",
        )
    return items
