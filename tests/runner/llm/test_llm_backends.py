"""Backends: one ChatClient contract over every implementation, then HTTP error mapping.

Real parts: the tiny random Llama in process (HFLocalClient), the same model behind the
toolkit's server in a subprocess (OpenAICompatClient over loopback HTTP), and ManagedClient
around each. Error mapping uses the real server app with injected faults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures import FakeBackend, free_port, serve_app

from qdanalysis.errors import AuthError, ConfigError, ProviderError
from qdanalysis.runner.llm import ChatRequest, ManagedClient, ResponseCache, RetryPolicy

MSGS = ({"role": "user", "content": "What is the capital of France?"},)


def run_with(client: Any, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``fn(client)`` in a fresh loop and close HTTP connections afterwards."""

    async def go() -> Any:
        try:
            return await fn(client)
        finally:
            inner = getattr(client, "client", client)
            if hasattr(inner, "aclose"):
                await inner.aclose()

    return asyncio.run(go())


@pytest.fixture(params=["hf_local", "openai_http", "managed_hf_local", "managed_http"])
def chat_client(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, str]:
    kind = request.param
    if "http" in kind:
        from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

        client: Any = OpenAICompatClient(request.getfixturevalue("tiny_server"), api_key_env=None)
    else:
        client = request.getfixturevalue("tiny_client")
    if kind.startswith("managed"):
        client = ManagedClient(
            client, cache=ResponseCache(tmp_path / "c.sqlite"), retry=RetryPolicy(max_attempts=2)
        )
    return client, "tiny-llama"


def req(**kw: Any) -> ChatRequest:
    base = {
        "model": "tiny-llama",
        "messages": MSGS,
        "max_tokens": 12,
        "temperature": 0.7,
        "seed": 3,
    }
    return ChatRequest(**{**base, **kw})


# contract ------------------------------------------------------------------------------------
def test_contract_same_seed_same_text(chat_client: tuple[Any, str]) -> None:
    client, _ = chat_client

    async def go(c: Any) -> tuple[str, str]:
        a = await c.complete(req(sample_index=1))
        b = await c.complete(req(sample_index=1))
        return a.text, b.text

    a, b = run_with(client, go)
    assert a == b
    assert a


def test_contract_sample_index_gives_distinct_samples(chat_client: tuple[Any, str]) -> None:
    client, _ = chat_client

    async def go(c: Any) -> list[str]:
        return [(await c.complete(req(sample_index=k))).text for k in range(4)]

    texts = run_with(client, go)
    assert len(set(texts)) == 4


def test_contract_n_samples_with_token_counts(chat_client: tuple[Any, str]) -> None:
    client, _ = chat_client
    out = run_with(client, lambda c: c.complete_n(req(), 3))
    assert len(out) == 3
    assert len({r.text for r in out}) == 3
    for r in out:
        assert r.prompt_tokens
        assert r.prompt_tokens > 5
        assert 1 <= r.completion_tokens <= 12
        assert r.finish_reason in ("stop", "length")


def test_contract_greedy_is_deterministic_across_seeds(chat_client: tuple[Any, str]) -> None:
    client, _ = chat_client

    async def go(c: Any) -> set[str]:
        return {(await c.complete(req(temperature=0.0, seed=s))).text for s in (1, 2)}

    assert len(run_with(client, go)) == 1


def test_contract_oversized_request_is_fatal(chat_client: tuple[Any, str]) -> None:
    client, _ = chat_client
    with pytest.raises(ProviderError) as info:
        run_with(client, lambda c: c.complete(req(max_tokens=5000)))
    assert info.value.kind == "fatal"


def test_http_matches_in_process_for_same_seed(tiny_client: Any, tiny_server: str) -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    http = OpenAICompatClient(tiny_server, api_key_env=None)
    for k in (0, 2):
        local = run_with(tiny_client, lambda c, k=k: c.complete(req(sample_index=k)))
        remote = run_with(http, lambda c, k=k: c.complete(req(sample_index=k)))
        assert remote.text == local.text
        assert (remote.prompt_tokens, remote.completion_tokens) == (
            local.prompt_tokens,
            local.completion_tokens,
        )


def test_stop_strings_cut_the_text(tiny_client: Any) -> None:
    full = run_with(tiny_client, lambda c: c.complete(req(max_tokens=30)))
    stop = full.text.strip()[3:6]
    if not stop.strip():
        pytest.skip("generated text has no usable stop string")
    cut = run_with(tiny_client, lambda c: c.complete(req(max_tokens=30, stop=(stop,))))
    assert stop not in cut.text
    assert full.text.startswith(cut.text)
    assert cut.finish_reason == "stop"


# HTTP error mapping with injected faults --------------------------------------------------------
def fault_server(**faults: Any) -> Any:
    from qdanalysis.runner.llm.server import create_app
    from qdanalysis.testing.faults import FaultSpec, FaultyBackend

    backend = FaultyBackend(FakeBackend(supports_n=True), FaultSpec(**faults))
    return serve_app(create_app(backend, model_name="fake"))


def fake_req(**kw: Any) -> ChatRequest:
    return ChatRequest(**{"model": "fake", "messages": MSGS, "seed": 1, **kw})


def test_http_429_maps_to_rate_limit_and_managed_client_honours_retry_after(
    no_retry_wait: list[float],
) -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    with fault_server(status=429, count=2, retry_after=0.5) as url:
        raw = OpenAICompatClient(url, api_key_env=None)
        with pytest.raises(ProviderError) as info:
            run_with(raw, lambda c: c.complete(fake_req()))
        assert (info.value.kind, info.value.retry_after) == ("rate_limit", 0.5)
        managed = ManagedClient(OpenAICompatClient(url, api_key_env=None))
        resp = run_with(managed, lambda c: c.complete(fake_req()))
    assert resp.text == "fake|What is the capital of France?|0|1"
    assert no_retry_wait == [0.5]
    assert managed.ledger.summary()["retries"] == 1


def test_http_500_maps_to_transient_and_is_retried_then_booked() -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    with fault_server(status=500, count=10) as url:
        managed = ManagedClient(
            OpenAICompatClient(url, api_key_env=None), retry=RetryPolicy(max_attempts=3)
        )
        with pytest.raises(ProviderError) as info:
            run_with(managed, lambda c: c.complete(fake_req()))
    assert info.value.kind == "transient"
    s = managed.ledger.summary()
    assert (s["errors"], s["retries"]) == (1, 2)


def test_http_404_unknown_model_is_fatal() -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    with fault_server() as url:
        with pytest.raises(ProviderError, match="not found") as info:
            run_with(
                OpenAICompatClient(url, api_key_env=None),
                lambda c: c.complete(fake_req(model="nope")),
            )
    assert info.value.kind == "fatal"
    assert not isinstance(info.value, AuthError)


def test_connection_refused_is_transient() -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    client = OpenAICompatClient(f"http://127.0.0.1:{free_port()}/v1", api_key_env=None)
    with pytest.raises(ProviderError) as info:
        run_with(client, lambda c: c.complete(fake_req()))
    assert info.value.kind == "transient"


def test_server_ignoring_n_falls_back_to_separate_requests() -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    with fault_server(ignore_n=True) as url:
        client = OpenAICompatClient(url, api_key_env=None)
        out = run_with(client, lambda c: c.complete_n(fake_req(sample_index=2), 4))
    # the fake echoes the seed it got: request seed + sample index
    assert [r.text.rsplit("|", 1)[1] for r in out] == ["3", "4", "5", "6"]


def test_api_key_never_leaks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("QDA_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    cache_path = tmp_path / "c.sqlite"
    seen: list[str] = []
    for status in (401, 403, 429, 500, 400):
        with fault_server(status=status, count=1) as url:
            client = OpenAICompatClient(url, api_key_env="QDA_TEST_KEY")
            seen.append(repr(client))
            with pytest.raises(ProviderError) as info:
                run_with(client, lambda c: c.complete(fake_req()))
            seen.append(str(info.value))
            if status in (401, 403):
                assert isinstance(info.value, AuthError)
                assert "QDA_TEST_KEY" in str(info.value)
            managed = ManagedClient(client, cache=ResponseCache(cache_path))
            run_with(managed, lambda c, k=status: c.complete(fake_req(sample_index=k)))
            seen.append(repr(managed))
    text = "\n".join(seen) + caplog.text
    assert secret not in text
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes()


def test_missing_key_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    monkeypatch.delenv("QDA_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="QDA_UNSET_KEY"):
        OpenAICompatClient("http://127.0.0.1:1/v1", api_key_env="QDA_UNSET_KEY")
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatClient("127.0.0.1:1/v1", api_key_env=None)


def test_models_endpoint_lists_the_served_model(tiny_server: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(tiny_server + "/models", timeout=10) as resp:
        data = json.load(resp)
    assert [m["id"] for m in data["data"]] == ["tiny-llama"]


def test_managed_n_over_http_uses_one_call(tiny_server: str, tmp_path: Path) -> None:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    managed = ManagedClient(
        OpenAICompatClient(tiny_server, api_key_env=None), cache=ResponseCache(tmp_path / "c.db")
    )
    out = run_with(managed, lambda c: c.complete_n(req(), 4))
    assert len({r.text for r in out}) == 4
    assert managed.ledger.summary()["backend_calls"] == 1
    again = run_with(managed, lambda c: c.complete_n(dataclasses.replace(req()), 4))
    assert all(r.cached for r in again)
