"""Chat backend for any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, our own server).

Wraps :class:`openai.AsyncOpenAI` with the SDK's own retries off (``max_retries=0``): retries live
once, in :class:`~qdanalysis.runner.llm.managed.ManagedClient`. HTTP errors map to
:class:`~qdanalysis.errors.ProviderError` kinds: 429 → ``rate_limit``, 408/409/5xx, timeouts
and connection errors → ``transient`` (``Retry-After`` parsed for both), 401/403 →
:class:`~qdanalysis.errors.AuthError`, other 4xx and malformed responses → ``fatal``.

The API key is read from the environment variable the caller names; it never appears in errors,
logs, reprs or caches.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ..._optional import require
from ...errors import AuthError, ConfigError, ProviderError
from .base import ChatRequest, ChatResponse, DeltaSink, complete_in_one_piece

__all__ = ["OpenAICompatClient", "parse_retry_after"]

logger = logging.getLogger(__name__)

_NO_KEY = "no-key"


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``.

    Examples
    --------
    >>> parse_retry_after({"retry-after": "2.5"})
    2.5
    >>> parse_retry_after({"retry-after-ms": "300"})
    0.3
    >>> parse_retry_after({}) is None
    True
    """
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _close_at_loop_shutdown(client: Any) -> AsyncGenerator[None, None]:
    """Suspend until closed; closing (explicitly or at loop shutdown) closes ``client``."""
    try:
        yield
        yield  # never reached: the generator is only ever closed
    finally:
        await client.close()


def _token_shares(choices: Sequence[Any], total: int | None) -> list[int | None]:
    """Each choice's completion tokens when a server reports only the request's total.

    With ``n > 1``, vLLM's usage gives one ``completion_tokens`` for all choices: it is shared in
    proportion to each choice's text length, rounded so the shares add up to the total (exact
    per request, approximate per choice). None when the server reports no usage.
    """
    if total is None:
        return [None] * len(choices)
    if len(choices) == 1:
        return [int(total)]
    sizes = [len(getattr(getattr(c, "message", None), "content", None) or "") + 1 for c in choices]
    bounds = [round(total * sum(sizes[: i + 1]) / sum(sizes)) for i in range(len(sizes))]
    return [b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]


class OpenAICompatClient:
    """A :class:`~qdanalysis.runner.llm.base.ChatClient` for an OpenAI-compatible ``/v1`` endpoint.

    Parameters
    ----------
    base_url
        The API root, e.g. ``"http://127.0.0.1:8000/v1"``; it is the cache endpoint.
    api_key_env
        NAME of the environment variable holding the key, read once here. ``None`` sends no real
        key (local servers).
    timeout_s
        HTTP timeout of one attempt in seconds.

    Raises
    ------
    ConfigError
        If ``api_key_env`` names an unset or empty variable.
    MissingDependencyError
        If ``openai`` is not installed.

    Notes
    -----
    The seed sent is ``request.seed + request.sample_index`` (``None`` when the request has no
    seed), so samples of one prompt get distinct seeds. :meth:`complete_n` asks for ``n``
    choices in one request and falls back to separate requests for the missing samples when the
    server rejects ``n`` (HTTP 400) or returns fewer choices; the fallback is then remembered.
    """

    supports_n = True

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 600.0,
    ) -> None:
        self._openai = require("openai", extra="llm", purpose="OpenAI-compatible endpoints")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"OpenAICompatClient base_url: expected an http(s) URL; got {base_url!r}. "
                "Pass e.g. 'http://127.0.0.1:8000/v1'."
            )
        self.endpoint = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        if api_key_env is None:
            self._key = _NO_KEY
        else:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise ConfigError(
                    f"OpenAICompatClient api_key_env: expected the environment variable "
                    f"{api_key_env!r} to hold an API key; got it unset or empty. Export it, or "
                    "pass api_key_env=None for a server without keys."
                )
            self._key = key
        self._clients: dict[int, Any] = {}
        self._closers: dict[int, AsyncGenerator[None, None]] = {}
        self._n_supported: bool | None = None
        self._stream_supported: bool | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatClient({self.endpoint!r}, api_key_env={self.api_key_env!r})"

    async def _client(self) -> Any:
        # httpx connection pools belong to one event loop: one SDK client per loop. Each client
        # is closed inside its own loop: either by aclose(), or when the loop shuts down (an
        # `asyncio.run` ends), through an async generator the loop finalises at shutdown.
        # Otherwise a client left over from a finished loop would be closed later from another
        # loop, with "Event loop is closed" errors and unclosed-socket warnings.
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            self._clients.clear()
            self._closers.clear()
            client = self._openai.AsyncOpenAI(
                base_url=self.endpoint,
                api_key=self._key,
                max_retries=0,
                timeout=self.timeout_s,
            )
            closer = _close_at_loop_shutdown(client)
            await closer.__anext__()  # registers it with this loop's async-generator hooks
            self._clients[loop_id] = client
            self._closers[loop_id] = closer
        return client

    async def aclose(self) -> None:
        """Close the HTTP connections of the current event loop's SDK client."""
        loop_id = id(asyncio.get_running_loop())
        self._clients.pop(loop_id, None)
        closer = self._closers.pop(loop_id, None)
        if closer is not None:
            await closer.aclose()

    async def ping(self) -> None:
        """Check that the server answers (``GET /models``) before any generation.

        Any HTTP answer but 401/403 counts: a server without ``/models`` still answers.

        Raises
        ------
        ProviderError
            If the server cannot be reached or does not answer within ``timeout_s`` (the
            message names :attr:`endpoint`).
        AuthError
            If it refuses the credentials.
        """
        o = self._openai
        try:
            await (await self._client()).models.list()
        except (o.AuthenticationError, o.PermissionDeniedError) as exc:
            error = self._map_error(exc)
        except o.APIConnectionError as exc:  # timeouts included
            cause = type(exc.__cause__ or exc).__name__
            reason = "timed out" if isinstance(exc, o.APITimeoutError) else f"refused: {cause}"
            error = ProviderError(
                f"endpoint {self.endpoint}: expected a server answering; got none ({reason}). "
                "Start the server or fix base_url.",
                kind="transient",
            )
        except o.OpenAIError:
            return  # any other HTTP answer: the server is up
        else:
            return
        raise error

    def _scrub(self, text: str) -> str:
        if self._key and self._key != _NO_KEY:
            text = text.replace(self._key, "***")
        return text

    def _map_error(self, exc: Exception) -> ProviderError:
        o = self._openai
        where = f"{self.endpoint}"
        if isinstance(exc, o.APITimeoutError):
            return ProviderError(
                f"{where}: request timed out after {self.timeout_s} s", kind="transient"
            )
        if isinstance(exc, o.APIConnectionError):
            return ProviderError(
                f"{where}: connection failed ({type(exc.__cause__ or exc).__name__}). Is the "
                "server up?",
                kind="transient",
            )
        if isinstance(exc, o.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                return AuthError(
                    f"{where}: expected valid credentials; got HTTP {status}. Check the key in "
                    f"${self.api_key_env} (its value is never shown)."
                    if self.api_key_env
                    else f"{where}: expected no credentials to be needed; got HTTP {status}. "
                    "Pass api_key_env naming the variable with the key."
                )
            message = self._scrub(str(getattr(exc, "message", "") or exc))[:500]
            if status == 429:
                return ProviderError(
                    f"{where}: rate limited (HTTP 429): {message}",
                    kind="rate_limit",
                    retry_after=parse_retry_after(exc.response.headers),
                )
            if status >= 500 or status in (408, 409):
                return ProviderError(
                    f"{where}: HTTP {status}: {message}",
                    kind="transient",
                    retry_after=parse_retry_after(exc.response.headers),  # 503 sends it too
                )
            return ProviderError(f"{where}: HTTP {status}: {message}", kind="fatal")
        return ProviderError(
            f"{where}: unexpected SDK error {type(exc).__name__}: {self._scrub(str(exc))[:500]}",
            kind="fatal",
        )

    @staticmethod
    def _params(request: ChatRequest, n: int) -> dict[str, Any]:
        """The chat-completions body of ``request`` drawing ``n`` choices."""
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            params["seed"] = request.seed + request.sample_index
        if request.stop:
            params["stop"] = list(request.stop)
        if n > 1:
            params["n"] = n
        return params

    async def _create(self, request: ChatRequest, n: int) -> tuple[Any, float]:
        params = self._params(request, n)
        logger.debug("POST %s/chat/completions model=%s n=%d", self.endpoint, request.model, n)
        start = time.perf_counter()
        error: ProviderError | None = None
        try:
            completion = await (await self._client()).chat.completions.create(**params)
        except self._openai.OpenAIError as exc:
            error = self._map_error(exc)
        except json.JSONDecodeError as exc:  # the SDK lets a malformed 200 body through as is
            error = ProviderError(
                f"{self.endpoint}: expected a JSON chat completion; got a malformed body "
                f"({exc.msg}, character {exc.pos}).",
                kind="fatal",
            )
        if error is not None:
            # Raised outside the handler, so no __context__ keeps the SDK error, whose message
            # may quote the key (a server echoing the Authorization header); ours is scrubbed.
            raise error
        return completion, time.perf_counter() - start

    def _responses(
        self, request: ChatRequest, completion: Any, latency: float
    ) -> list[ChatResponse]:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ProviderError(
                f"{self.endpoint}: expected at least one choice in the response; got "
                f"{type(completion).__name__} without choices.",
                kind="fatal",
            )
        usage = getattr(completion, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        total_completion = getattr(usage, "completion_tokens", None)
        out = []
        ordered = sorted(choices, key=lambda c: c.index)
        shares = _token_shares(ordered, total_completion)
        for choice, share in zip(ordered, shares, strict=True):
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None)
            if not isinstance(text, str):
                raise ProviderError(
                    f"{self.endpoint}: expected a text message in choice {choice.index}; got "
                    f"{text!r}.",
                    kind="fatal",
                )
            extra = getattr(choice, "model_extra", None) or {}
            per_choice = extra.get("completion_tokens")
            if per_choice is None:
                per_choice = share
            out.append(
                ChatResponse(
                    text=text,
                    model=str(getattr(completion, "model", None) or request.model),
                    finish_reason=choice.finish_reason,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=per_choice,
                    latency_s=latency,
                    extra={"n_batch": len(choices)} if len(choices) > 1 else {},
                )
            )
        return out

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One completion; raises :class:`ProviderError` with the mapped ``kind``."""
        completion, latency = await self._create(request, 1)
        return self._responses(request, completion, latency)[0]

    async def complete_stream(self, request: ChatRequest, on_delta: DeltaSink) -> ChatResponse:
        """One completion streamed from the server (``stream: true``) into ``on_delta``.

        Asks for the usage in the last chunk (``stream_options.include_usage``); a server that
        sends none leaves the token counts None. Errors map as in :meth:`complete`, also when
        they arrive inside the stream. A server that answers with no stream events at all
        (one that ignores ``stream``, like the toolkit's own local server) is asked again
        without streaming, and its text arrives as one piece; that is remembered.
        """
        if self._stream_supported is False:
            return await complete_in_one_piece(self, request, on_delta)
        params = self._params(request, 1) | {
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        logger.debug("POST %s/chat/completions model=%s stream", self.endpoint, request.model)
        start = time.perf_counter()
        parts: list[str] = []
        last: dict[str, Any] = {"model": None, "finish_reason": None, "usage": None}
        error: ProviderError | None = None
        try:
            stream = await (await self._client()).chat.completions.create(**params)
            async with stream:  # closes the connection on any exit, cancellation included
                async for chunk in stream:
                    last["model"] = last["model"] or getattr(chunk, "model", None)
                    last["usage"] = getattr(chunk, "usage", None) or last["usage"]
                    for choice in getattr(chunk, "choices", None) or ():
                        text = getattr(getattr(choice, "delta", None), "content", None)
                        if text:
                            parts.append(text)
                            on_delta(text)
                        last["finish_reason"] = choice.finish_reason or last["finish_reason"]
        except self._openai.OpenAIError as exc:
            error = self._map_error(exc)
        if error is not None:
            raise error  # outside the handler, as in _create
        if last["model"] is None and not parts:
            logger.info("%s sent no stream events; answering without streaming", self.endpoint)
            self._stream_supported = False
            return await complete_in_one_piece(self, request, on_delta)
        self._stream_supported = True
        usage = last["usage"]
        return ChatResponse(
            text="".join(parts),
            model=str(last["model"] or request.model),
            finish_reason=last["finish_reason"],
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            latency_s=time.perf_counter() - start,
        )

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Samples ``request.sample_index`` … ``+ n - 1`` with one ``n`` request if possible."""
        if n < 1:
            raise ConfigError(f"OpenAICompatClient.complete_n n: expected >= 1; got {n!r}.")
        got: list[ChatResponse] = []
        if n > 1 and self._n_supported is not False:
            try:
                completion, latency = await self._create(request, n)
                got = self._responses(request, completion, latency)[:n]
            except ProviderError as exc:
                if exc.kind != "fatal" or isinstance(exc, AuthError):
                    raise
                logger.info(
                    "%s rejected n=%d (%s); drawing samples one by one", self.endpoint, n, exc
                )
                self._n_supported = False
            else:
                if len(got) < n:
                    logger.info(
                        "%s returned %d of n=%d choices; drawing the rest one by one",
                        self.endpoint,
                        len(got),
                        n,
                    )
                    self._n_supported = False
                else:
                    self._n_supported = True
        import dataclasses

        rest = [
            dataclasses.replace(request, sample_index=request.sample_index + j)
            for j in range(len(got), n)
        ]
        got += await asyncio.gather(*(self.complete(r) for r in rest))
        return got
