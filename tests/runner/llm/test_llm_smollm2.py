"""SmolLM2-135M-Instruct: real generation in process and over real HTTP (slow tier)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qdanalysis.runner.llm import ChatRequest

pytestmark = pytest.mark.slow

FRANCE = ({"role": "user", "content": "What is the capital of France?"},)


def run_with(client: Any, coro_fn: Any) -> Any:
    async def go() -> Any:
        try:
            return await coro_fn(client)
        finally:
            if hasattr(client, "aclose"):
                await client.aclose()

    return asyncio.run(go())


@pytest.fixture(params=["in_process", "http"])
def smol(request: pytest.FixtureRequest) -> Any:
    if request.param == "http":
        from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

        return OpenAICompatClient(request.getfixturevalue("smollm2_server"), api_key_env=None)
    return request.getfixturevalue("smollm2_client")


def test_greedy_answer_names_paris(smol: Any) -> None:
    req = ChatRequest(model="smollm2", messages=FRANCE, temperature=0.0, max_tokens=24)
    resp = run_with(smol, lambda c: c.complete(req))
    assert "Paris" in resp.text
    assert resp.prompt_tokens
    assert resp.prompt_tokens > 10
    assert 1 <= resp.completion_tokens <= 24


def test_samples_at_t07_are_distinct_and_seeded(smol: Any) -> None:
    req = ChatRequest(model="smollm2", messages=FRANCE, temperature=0.7, max_tokens=24, seed=11)

    async def go(c: Any) -> tuple[list[str], str]:
        batch = await c.complete_n(req, 3)
        again = await c.complete_n(req, 3)
        assert [r.text for r in again] == [r.text for r in batch]
        return [r.text for r in batch], ""

    texts, _ = run_with(smol, go)
    assert len(set(texts)) == 3
    assert all(t.strip() for t in texts)


def test_same_seed_same_output_one_by_one(smol: Any) -> None:
    req = ChatRequest(model="smollm2", messages=FRANCE, temperature=0.7, max_tokens=16, seed=5)

    async def go(c: Any) -> list[str]:
        return [(await c.complete(req)).text for _ in range(2)] + [
            (await c.complete(ChatRequest(**{**req.__dict__, "sample_index": 1}))).text
        ]

    a, b, other = run_with(smol, go)
    assert a == b
    assert other != a
