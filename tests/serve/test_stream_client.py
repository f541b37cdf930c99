"""Streaming in the client layer: ManagedClient.complete_stream retries only before any text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from qdanalysis.errors import ProviderError
from qdanalysis.runner.llm.base import ChatRequest, ChatResponse, complete_streaming
from qdanalysis.runner.llm.cache import ResponseCache
from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy
from qdanalysis.testing import MockClient

REQ = ChatRequest(model="m", messages=({"role": "user", "content": "q"},))


class Breaking:
    """Streams ``pieces``; attempt k raises after ``fail_after[k]`` pieces (None: finishes)."""

    endpoint = "fake://stream"

    def __init__(self, fail_after: list[int | None]) -> None:
        self.fail_after = fail_after
        self.attempts = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError("a streaming backend is asked to stream")

    async def complete_stream(
        self, request: ChatRequest, on_delta: Callable[[str], None]
    ) -> ChatResponse:
        limit = self.fail_after[self.attempts]
        self.attempts += 1
        pieces = ["a", "b", "c"]
        for i, p in enumerate(pieces):
            if limit is not None and i == limit:
                raise ProviderError("upstream 500 mid-stream", kind="transient")
            on_delta(p)
            await asyncio.sleep(0)
        return ChatResponse(text="abc", model=request.model, completion_tokens=3)


def _stream(client: Any) -> tuple[list[str], Any]:
    got: list[str] = []
    return got, asyncio.run(client.complete_stream(REQ, got.append))


def test_a_failure_before_any_text_is_retried() -> None:
    backend = Breaking([0, None])
    got, resp = _stream(ManagedClient(backend, retry=RetryPolicy(wait=False)))
    assert (got, resp.text, backend.attempts) == (["a", "b", "c"], "abc", 2)


def test_a_failure_after_text_is_final() -> None:
    backend = Breaking([2, None])
    client = ManagedClient(backend, retry=RetryPolicy(wait=False))
    got: list[str] = []
    with pytest.raises(ProviderError, match="broke after 2 characters") as err:
        asyncio.run(client.complete_stream(REQ, got.append))
    assert err.value.kind == "fatal"
    assert (got, backend.attempts) == (["a", "b"], 1)  # the retry never reached the backend
    assert client.ledger.summary()["errors"] == 1


def test_cache_hits_and_non_streaming_backends_send_one_piece(tmp_path: Any) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ManagedClient(MockClient(responder=lambda r: "whole text"), cache=cache)
    for _ in range(2):  # a backend call, then a cache hit
        got, resp = _stream(client)
        assert got == ["whole text"] == [resp.text]
    assert client.ledger.summary()["cache_hits"] == 1
    cache.close()
    pieces: list[str] = []
    asyncio.run(complete_streaming(MockClient(responder=lambda r: ""), REQ, pieces.append))
    assert pieces == []  # no empty piece
