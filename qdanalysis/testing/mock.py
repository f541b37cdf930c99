"""Fakes for orchestration tests: a deterministic :class:`MockClient` chat backend.

The mock never stands in for a real model when a behaviour of the model matters; it tests the
plumbing around models (windows, numbering, resume, retries, error rows).

Neighbours: :mod:`qdanalysis.runner.llm.base` defines the protocol it implements.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from .._hashing import content_hash
from ..errors import ProviderError
from ..runner.llm.base import ChatRequest, ChatResponse

__all__ = ["MockClient", "fail_times"]

Responder = Callable[[ChatRequest], str]
Failure = Callable[[ChatRequest, int], BaseException | None]


def _default_responder(request: ChatRequest) -> str:
    h = int(content_hash(request.key_fields(), length=8), 16)
    last = request.messages[-1]["content"]
    if "## Choices" in last:
        answer = "ABCDE"[h % 5]
    else:
        answer = str(h % 4)
    return json.dumps({"reasoning": f"mock reasoning {h:08x}", "answer": answer})


def fail_times(
    times: int, *, kind: str = "transient", when: Callable[[ChatRequest], bool] | None = None
) -> Failure:
    """A failure rule: the first ``times`` attempts of each matching request raise.

    ``times=-1`` fails every attempt. ``kind`` is the :class:`ProviderError` kind
    (``rate_limit`` for HTTP 429, ``transient`` for 5xx).
    """

    def rule(request: ChatRequest, attempt: int) -> BaseException | None:
        if when is not None and not when(request):
            return None
        if times < 0 or attempt < times:
            code = 429 if kind == "rate_limit" else 500
            return ProviderError(f"mock HTTP {code}", kind=kind, retry_after=0.0)
        return None

    return rule


class MockClient:
    """A deterministic fake :class:`~qdanalysis.runner.llm.base.ChatClient` that records its calls.

    Parameters
    ----------
    responder
        ``request -> text``; by default a JSON answer derived from a hash of the request (a
        letter when the prompt lists choices, else a digit 0-3), so distinct samples differ.
    failure
        ``(request, attempt) -> exception or None``; ``attempt`` counts earlier calls of the same
        request key. See :func:`fail_times`.
    delay_s
        Sleep per call (to make concurrency and kills observable; never asserted on).
    log_path
        Append one JSON line per call (model, sample_index, key hash) to this file, fsynced, so
        a test can count calls made by a killed subprocess.
    endpoint
        The endpoint string (part of cache keys).

    Examples
    --------
    >>> import asyncio
    >>> from qdanalysis.runner.llm.base import ChatRequest
    >>> c = MockClient(responder=lambda r: "hi")
    >>> req = ChatRequest(model="m", messages=({"role": "user", "content": "q"},))
    >>> asyncio.run(c.complete(req)).text
    'hi'
    >>> len(c.calls)
    1
    """

    supports_n = False

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        failure: Failure | None = None,
        delay_s: float = 0.0,
        log_path: str | Path | None = None,
        endpoint: str = "mock://local",
    ) -> None:
        self.responder = responder or _default_responder
        self.failure = failure
        self.delay_s = delay_s
        self.log_path = None if log_path is None else Path(log_path)
        self.endpoint = endpoint
        self.calls: list[ChatRequest] = []
        self._attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    def __repr__(self) -> str:
        return f"MockClient(endpoint={self.endpoint!r}, calls={len(self.calls)})"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Record the call, maybe fail, then answer deterministically."""
        self.calls.append(request)
        key = content_hash(request.key_fields(), length=16)
        attempt = self._attempts.get(key, 0)
        self._attempts[key] = attempt + 1
        if self.log_path is not None:
            line = json.dumps(
                {"model": request.model, "sample_index": request.sample_index, "key": key}
            )
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            else:
                await asyncio.sleep(0)
            if self.failure is not None:
                exc = self.failure(request, attempt)
                if exc is not None:
                    raise exc
            text = self.responder(request)
        finally:
            self.in_flight -= 1
        n_prompt = sum(len(m["content"].split()) for m in request.messages)
        return ChatResponse(
            text=text,
            model=request.model,
            finish_reason="stop",
            prompt_tokens=n_prompt,
            completion_tokens=len(text.split()),
            latency_s=self.delay_s,
        )
