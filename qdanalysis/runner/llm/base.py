"""Chat request and response types and the :class:`ChatClient` protocol.

Providers implement one async method, :meth:`ChatClient.complete`, and only translate: they raise
:class:`~qdanalysis.errors.ProviderError` with ``kind`` set, and leave retries, caching,
concurrency and accounting to :class:`qdanalysis.runner.llm.managed.ManagedClient`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..._hashing import content_hash
from ...errors import ConfigError

__all__ = [
    "BatchedBackend",
    "ChatClient",
    "ChatRequest",
    "ChatResponse",
    "DeltaSink",
    "Message",
    "MultiSampleClient",
    "StreamingClient",
    "complete_in_one_piece",
    "complete_streaming",
    "contiguous_runs",
    "ping",
    "request_key",
    "supports_n",
]

Message = Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """One chat-completion request. Everything here that changes the output is in the cache key."""

    model: str
    """Model name as the backend knows it."""
    messages: tuple[Mapping[str, str], ...]
    """Chat messages, each ``{"role": ..., "content": ...}``."""
    temperature: float = 0.7
    """Sampling temperature (0 = greedy)."""
    max_tokens: int = 2048
    """Maximum new tokens."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    seed: int | None = None
    """Sampling seed, when the backend honours one."""
    sample_index: int = 0
    """Which sample of (model, messages) this is: distinct indices are distinct samples."""
    stop: tuple[str, ...] = ()
    """Stop strings."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("ChatRequest.model: expected a non-empty model name; got ''.")
        msgs = tuple(dict(m) for m in self.messages)
        for i, m in enumerate(msgs):
            if set(m) != {"role", "content"} or not isinstance(m["content"], str):
                raise ConfigError(
                    f"ChatRequest.messages[{i}]: expected {{'role': str, 'content': str}}; "
                    f"got {m!r}."
                )
        object.__setattr__(self, "messages", msgs)
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.temperature < 0:
            raise ConfigError(f"ChatRequest.temperature: expected >= 0; got {self.temperature!r}.")
        if self.max_tokens < 1:
            raise ConfigError(f"ChatRequest.max_tokens: expected >= 1; got {self.max_tokens!r}.")
        if self.sample_index < 0:
            raise ConfigError(
                f"ChatRequest.sample_index: expected >= 0; got {self.sample_index!r}."
            )

    def key_fields(self) -> dict[str, Any]:
        """The fields that determine the output (for cache keys), as plain data."""
        return {
            "model": self.model,
            "messages": [dict(m) for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "sample_index": self.sample_index,
            "stop": list(self.stop),
        }


@dataclass(frozen=True, kw_only=True)
class ChatResponse:
    """One completion and its accounting."""

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    cached: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class ChatClient(Protocol):
    """A chat backend. ``endpoint`` (base URL or model path) is part of the cache key."""

    @property
    def endpoint(self) -> str:
        """Base URL or model path; a plain attribute or a read-only property satisfies it."""
        ...

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Return one completion, or raise :class:`~qdanalysis.errors.ProviderError`."""
        ...


@runtime_checkable
class MultiSampleClient(ChatClient, Protocol):
    """A backend that draws several samples of one prompt in one call (OpenAI's ``n``).

    ``complete_n(request, n)`` returns samples ``request.sample_index`` to
    ``request.sample_index + n - 1``, in that order. Backends set ``supports_n = True``.
    """

    supports_n: bool

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Return ``n`` completions of ``request``, or raise :class:`ProviderError`."""
        ...


DeltaSink = Callable[[str], None]
"""Receives each piece of text of a streamed completion as it arrives, in order."""


@runtime_checkable
class StreamingClient(ChatClient, Protocol):
    """A backend that streams a completion's text as it is generated.

    ``complete_stream(request, on_delta)`` calls ``on_delta`` with each new piece of text, in
    order, and returns the whole completion (text and accounting) once it ends; the pieces
    joined are its ``text``.
    """

    async def complete_stream(self, request: ChatRequest, on_delta: DeltaSink) -> ChatResponse:
        """Stream one completion into ``on_delta``, or raise :class:`ProviderError`."""
        ...


async def complete_streaming(
    client: ChatClient, request: ChatRequest, on_delta: DeltaSink
) -> ChatResponse:
    """One completion, streamed into ``on_delta`` when ``client`` can stream.

    A client without ``complete_stream`` (in-process models, the mock) answers with
    :meth:`ChatClient.complete` and its whole text arrives as one piece when it is done.

    Examples
    --------
    >>> import asyncio
    >>> from qdanalysis.testing import MockClient
    >>> pieces: list[str] = []
    >>> req = ChatRequest(model="m", messages=({"role": "user", "content": "q"},))
    >>> text = asyncio.run(complete_streaming(MockClient(lambda r: "hi"), req, pieces.append)).text
    >>> text, pieces
    ('hi', ['hi'])
    """
    stream = getattr(client, "complete_stream", None)
    if callable(stream):
        resp: ChatResponse = await stream(request, on_delta)
        return resp
    return await complete_in_one_piece(client, request, on_delta)


async def complete_in_one_piece(
    client: ChatClient, request: ChatRequest, on_delta: DeltaSink
) -> ChatResponse:
    """:meth:`ChatClient.complete`, then its whole text to ``on_delta`` (the no-stream path)."""
    resp = await client.complete(request)
    if resp.text:
        on_delta(resp.text)
    return resp


def supports_n(client: object) -> bool:
    """Whether ``client`` can draw several samples in one call (see :class:`MultiSampleClient`).

    Examples
    --------
    >>> supports_n(object())
    False
    """
    return bool(getattr(client, "supports_n", False)) and callable(
        getattr(client, "complete_n", None)
    )


def request_key(endpoint: str, request: ChatRequest) -> str:
    """The identity of ``request`` sent to ``endpoint`` (64 hex digits).

    One key for every place that reuses an answer: the response cache looks answers up by it and
    a run store reuses a row only when its recorded key equals it. It covers the endpoint and
    :meth:`ChatRequest.key_fields` (model, messages, temperature, top_p, max_tokens, stop, seed,
    ``sample_index``).

    Examples
    --------
    >>> r = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},))
    >>> request_key("e", r) == request_key("e", r)
    True
    >>> import dataclasses
    >>> request_key("e", r) == request_key("e", dataclasses.replace(r, max_tokens=32))
    False
    """
    return content_hash({"endpoint": endpoint, "request": request.key_fields()})


async def ping(client: object) -> None:
    """Check that ``client``'s endpoint(s) answer, when it can tell (its ``ping()`` method).

    Raises
    ------
    ProviderError
        If an endpoint does not answer (the message names it).
    """
    check = getattr(client, "ping", None)
    if callable(check):
        await check()


def contiguous_runs(indices: Sequence[int]) -> list[list[int]]:
    """Split indices (sorted first) into runs of consecutive integers.

    Examples
    --------
    >>> contiguous_runs([0, 1, 3, 4, 5, 7])
    [[0, 1], [3, 4, 5], [7]]
    """
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


class BatchedBackend:
    """Base of in-process backends that draw every request as a batch of ``n`` samples.

    Subclasses implement :meth:`_complete_n`; :meth:`complete` and :meth:`complete_n` check
    ``n`` and delegate to it.
    """

    supports_n = True

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One completion: a batch of one."""
        (resp,) = await self.complete_n(request, 1)
        return resp

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """``n`` samples of ``request`` (``request.sample_index`` onwards) in one batch."""
        if n < 1:
            raise ConfigError(f"{type(self).__name__}.complete_n n: expected >= 1; got {n!r}.")
        return await self._complete_n(request, n)

    async def _complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        raise NotImplementedError
