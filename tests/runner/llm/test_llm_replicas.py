"""ReplicaClient: one model over several servers (spread by load, failover, one endpoint)."""

from __future__ import annotations

import asyncio

import pytest
from fixtures import FakeBackend

from qdanalysis.errors import AuthError, ConfigError, ProviderError
from qdanalysis.runner.llm import ChatRequest
from qdanalysis.runner.llm.backends import EndpointSpec, build_router
from qdanalysis.runner.llm.replicas import ReplicaClient, replica_endpoint

REQ = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},), seed=1)


def test_calls_spread_over_replicas_by_load() -> None:
    a, b = FakeBackend(delay_s=0.01, supports_n=True), FakeBackend(delay_s=0.01, supports_n=True)
    client = ReplicaClient(["http://a/v1", "http://b/v1"], clients=[a, b])

    async def go() -> None:
        await asyncio.gather(*(client.complete_n(REQ, 3) for _ in range(10)))

    asyncio.run(go())
    assert len(a.calls) == 5
    assert len(b.calls) == 5
    assert all(n == 3 for _, n in a.calls + b.calls)  # n stays one request on one replica


def test_a_replica_that_fails_is_skipped_and_the_call_moves_on() -> None:
    down = ProviderError("http://a/v1: connection failed", kind="transient")
    a = FakeBackend(errors=[down] * 100)
    b = FakeBackend()
    client = ReplicaClient(["http://a/v1", "http://b/v1"], clients=[a, b], cooldown_s=60)

    async def go() -> list[str]:
        return [(await client.complete(REQ)).text for _ in range(4)]

    texts = asyncio.run(go())
    assert len(texts) == 4
    assert len(a.calls) == 1  # tried once, then cooled down
    assert len(b.calls) == 4


def test_every_replica_down_raises_transient_and_fatal_errors_pass_through() -> None:
    err = ProviderError("down", kind="transient")
    client = ReplicaClient(
        ["http://a/v1", "http://b/v1"],
        clients=[FakeBackend(errors=[err]), FakeBackend(errors=[err])],
    )
    with pytest.raises(ProviderError, match="every replica failed") as info:
        asyncio.run(client.complete(REQ))
    assert info.value.kind == "transient"
    bad = ReplicaClient(["http://a/v1"], clients=[FakeBackend(errors=[AuthError("no key")])])
    with pytest.raises(AuthError):
        asyncio.run(bad.complete(REQ))


def test_one_endpoint_whatever_the_order_and_bad_urls_rejected() -> None:
    assert replica_endpoint(["http://b/v1/", "http://a/v1"]) == "replicas(http://a/v1|http://b/v1)"
    with pytest.raises(ConfigError, match="distinct URLs"):
        ReplicaClient(["http://a/v1", "http://a/v1/"], clients=[FakeBackend(), FakeBackend()])
    with pytest.raises(ConfigError, match="distinct URLs"):
        ReplicaClient([])


def test_an_openai_model_with_replicas_in_options_builds_a_replica_client() -> None:
    spec = EndpointSpec(
        backend="openai",
        base_url="http://127.0.0.1:9/v1",
        options={"replicas": ["http://127.0.0.1:10/v1"]},
    )
    router = build_router({"qwen": spec})
    assert router.endpoint_for("qwen").startswith(
        "replicas(http://127.0.0.1:10/v1|http://127.0.0.1:9/v1)"
    )
