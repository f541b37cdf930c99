"""Per-model endpoints: the router factory, served ids, caps, rate limits, --endpoint parsing."""

from __future__ import annotations

import asyncio

import pytest

from qdanalysis.errors import ConfigError
from qdanalysis.runner.llm import backends
from qdanalysis.runner.llm.backends import EndpointSpec, build_router, parse_endpoint
from qdanalysis.runner.llm.base import ChatRequest
from qdanalysis.testing import MockClient


def _mock(spec: EndpointSpec) -> MockClient:
    return MockClient(endpoint=f"mock://{spec.options.get('host', 'x')}")


def test_models_sharing_an_endpoint_share_one_backend_and_keep_their_own_keys() -> None:
    specs = {
        "a": EndpointSpec(backend="mock", options={"host": "1"}),
        "b": EndpointSpec(backend="mock", options={"host": "1"}, served_model="B"),
        "c": EndpointSpec(backend="mock", options={"host": "2"}),
    }
    r = build_router(specs, factories={"mock": _mock})
    assert r.clients["b"].backend is r.clients["a"]  # one instance per endpoint
    assert r.clients["c"] is not r.clients["a"]
    assert r.endpoint_for("a") == "mock://1#a"
    assert r.endpoint_for("b") == "mock://1[B]#b"  # the served id is part of the cache key
    assert r.endpoint_for("c") == "mock://2#c"


def test_served_id_is_what_the_backend_is_asked() -> None:
    r = build_router(
        {"b": EndpointSpec(backend="mock", served_model="B")}, factories={"mock": _mock}
    )
    req = ChatRequest(model="b", messages=({"role": "user", "content": "q"},))
    asyncio.run(r.complete(req))
    assert [c.model for c in r.clients["b"].backend.calls] == ["B"]


def test_requests_per_minute_spaces_call_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(backends.asyncio, "sleep", record)
    r = build_router(
        {"a": EndpointSpec(backend="mock", requests_per_minute=600)}, factories={"mock": _mock}
    )
    req = ChatRequest(model="a", messages=({"role": "user", "content": "q"},))

    async def many() -> None:
        await asyncio.gather(*(r.complete(req) for _ in range(4)))

    asyncio.run(many())
    assert len(waits) >= 3  # the 2nd, 3rd and 4th start wait for their slot (0.1 s apart)
    assert 0.2 < max(waits) <= 0.3 + 1e-9  # the last starts 3 intervals after the first


@pytest.mark.parametrize(
    "text",
    ["a", "=http://h/v1", "a=", "a=http://h/v1,token=x", "a=http://h/v1,concurrency=many"],
)
def test_bad_endpoint_text_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match="expected"):
        parse_endpoint(text)


def test_unknown_backend_kind_is_refused_before_building_any() -> None:
    with pytest.raises(ConfigError, match="expected a backend from"):
        build_router({"a": EndpointSpec(backend="nope")})
