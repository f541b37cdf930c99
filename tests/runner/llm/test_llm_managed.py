"""ManagedClient orchestration with a scripted fake backend: retries, cap, cache, timeout, n."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from fixtures import FakeBackend

from qdanalysis.errors import AuthError, ConfigError, ProviderError
from qdanalysis.runner.llm import (
    ChatRequest,
    ManagedClient,
    ResponseCache,
    RetryPolicy,
    UsageLedger,
)

REQ = ChatRequest(model="m", messages=({"role": "user", "content": "q"},), seed=5)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_rate_limit_then_success_is_retried_and_booked(no_retry_wait: list[float]) -> None:
    backend = FakeBackend(errors=[ProviderError("slow down", kind="rate_limit")])
    client = ManagedClient(backend, retry=RetryPolicy(base_delay_s=2.0, jitter=0.0))
    resp = run(client.complete(REQ))
    assert resp.text == "m|q|0|5"
    assert len(backend.calls) == 2
    assert no_retry_wait == [2.0]
    s = client.ledger.summary()
    assert (s["calls"], s["backend_calls"], s["retries"], s["errors"]) == (1, 1, 1, 0)
    assert (s["prompt_tokens"], s["completion_tokens"]) == (7, 3)


def test_retry_after_is_honoured(no_retry_wait: list[float]) -> None:
    backend = FakeBackend(
        errors=[
            ProviderError("429", kind="rate_limit", retry_after=7.5),
            ProviderError("429", kind="rate_limit", retry_after=0.25),
        ]
    )
    run(ManagedClient(backend, retry=RetryPolicy(base_delay_s=100.0)).complete(REQ))
    assert no_retry_wait == [7.5, 0.25]


def test_backoff_is_exponential_and_jittered(no_retry_wait: list[float]) -> None:
    backend = FakeBackend(errors=[ProviderError("x", kind="transient")] * 4)
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, jitter=0.5)
    run(ManagedClient(backend, retry=policy, seed=0).complete(REQ))
    caps = [1.0, 2.0, 4.0, 5.0]
    assert len(no_retry_wait) == 4
    for slept, cap in zip(no_retry_wait, caps, strict=True):
        assert cap * 0.5 <= slept <= cap


def test_transient_errors_give_up_after_max_attempts(no_retry_wait: list[float]) -> None:
    backend = FakeBackend(errors=[ProviderError("HTTP 500", kind="transient")] * 10)
    client = ManagedClient(backend, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ProviderError, match="HTTP 500") as info:
        run(client.complete(REQ))
    assert info.value.kind == "transient"
    assert len(backend.calls) == 3
    assert len(no_retry_wait) == 2
    s = client.ledger.summary()
    assert (s["errors"], s["retries"], s["backend_calls"]) == (1, 2, 0)
    (rec,) = client.ledger.records
    assert (rec.status, rec.error_kind) == ("error", "transient")


@pytest.mark.parametrize("error", [ProviderError("bad", kind="fatal"), AuthError("no")])
def test_fatal_errors_are_not_retried(error: ProviderError, no_retry_wait: list[float]) -> None:
    backend = FakeBackend(errors=[error])
    with pytest.raises(ProviderError):
        run(ManagedClient(backend).complete(REQ))
    assert len(backend.calls) == 1
    assert no_retry_wait == []


def test_retry_after_beyond_cap_fails_at_once() -> None:
    backend = FakeBackend(errors=[ProviderError("429", kind="rate_limit", retry_after=3600)])
    with pytest.raises(ProviderError) as info:
        run(ManagedClient(backend, retry=RetryPolicy(max_retry_after_s=60)).complete(REQ))
    assert info.value.kind == "rate_limit"
    assert len(backend.calls) == 1


def test_policy_wait_false_never_sleeps(no_retry_wait: list[float]) -> None:
    backend = FakeBackend(errors=[ProviderError("x", kind="transient")])
    run(ManagedClient(backend, retry=RetryPolicy(wait=False)).complete(REQ))
    assert no_retry_wait == []
    assert len(backend.calls) == 2


def test_custom_sleep_in_policy_receives_delays() -> None:
    got: list[float] = []

    async def rec(s: float) -> None:
        got.append(s)

    backend = FakeBackend(errors=[ProviderError("x", kind="rate_limit", retry_after=1.5)])
    run(ManagedClient(backend, retry=RetryPolicy(sleep=rec)).complete(REQ))
    assert got == [1.5]


def test_concurrency_cap_holds() -> None:
    backend = FakeBackend(delay_s=0.01)
    client = ManagedClient(backend, max_concurrency=3)

    async def go() -> list[str]:
        reqs = [dataclasses.replace(REQ, sample_index=i) for i in range(20)]
        return [r.text for r in await asyncio.gather(*(client.complete(r) for r in reqs))]

    texts = run(go())
    assert len(set(texts)) == 20
    assert backend.max_in_flight == 3


def test_timeout_becomes_transient_and_is_retried() -> None:
    backend = FakeBackend(delay_s=5.0)
    client = ManagedClient(backend, timeout_s=0.02, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ProviderError, match=r"within 0\.02 s") as info:
        run(client.complete(REQ))
    assert info.value.kind == "transient"
    assert len(backend.calls) == 2


def test_cache_hits_and_misses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend()
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ManagedClient(backend, cache=cache)
    first = run(client.complete(REQ))
    second = run(client.complete(REQ))
    assert (first.cached, second.cached) == (False, True)
    assert first.text == second.text
    assert len(backend.calls) == 1
    other = run(client.complete(dataclasses.replace(REQ, sample_index=1)))
    assert other.text != first.text
    assert not other.cached
    s = client.ledger.summary()
    assert (s["calls"], s["cache_hits"], s["backend_calls"]) == (3, 1, 2)


def test_errors_are_never_cached(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend(errors=[ProviderError("bad", kind="fatal")])
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ManagedClient(backend, cache=cache)
    with pytest.raises(ProviderError):
        run(client.complete(REQ))
    assert len(cache) == 0
    assert run(client.complete(REQ)).text == "m|q|0|5"
    assert len(cache) == 1


def test_complete_n_without_backend_n_sends_separate_requests(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend(supports_n=False)
    client = ManagedClient(backend, cache=ResponseCache(tmp_path / "c.sqlite"))
    out = run(client.complete_n(dataclasses.replace(REQ, sample_index=2), 4))
    assert [r.text.split("|")[2] for r in out] == ["2", "3", "4", "5"]
    assert sorted(n for _, n in backend.calls) == [1, 1, 1, 1]
    assert sorted(r.sample_index for r, _ in backend.calls) == [2, 3, 4, 5]


def test_complete_n_asks_backend_only_for_missing_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend(supports_n=True)
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ManagedClient(backend, cache=cache)
    run(client.complete(dataclasses.replace(REQ, sample_index=2)))  # sample 2 cached
    backend.calls.clear()
    out = run(client.complete_n(REQ, 6))
    assert [r.text.split("|")[2] for r in out] == ["0", "1", "2", "3", "4", "5"]
    assert [r.cached for r in out] == [False, False, True, False, False, False]
    assert sorted((r.sample_index, n) for r, n in backend.calls) == [(0, 2), (3, 3)]
    assert len(cache) == 6
    backend.calls.clear()
    again = run(client.complete_n(REQ, 6))
    assert backend.calls == []
    assert all(r.cached for r in again)
    assert [r.text for r in again] == [r.text for r in out]
    s = client.ledger.summary()
    assert s["samples"] == 1 + 6 + 6
    assert s["cache_hits"] == 1 + 6


def test_complete_n_caches_successes_before_raising(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend(errors=[None, ProviderError("bad", kind="fatal")], delay_s=0.0)
    cache = ResponseCache(tmp_path / "c.sqlite")
    client = ManagedClient(backend, cache=cache, max_concurrency=1)
    with pytest.raises(ProviderError):
        run(client.complete_n(REQ, 3))
    assert len(cache) == 2


def test_shared_ledger_and_config_errors() -> None:
    ledger = UsageLedger()
    ManagedClient(FakeBackend(), ledger=ledger)
    run(ManagedClient(FakeBackend(), ledger=ledger).complete(REQ))
    assert ledger.summary()["calls"] == 1
    with pytest.raises(ConfigError, match="max_concurrency"):
        ManagedClient(FakeBackend(), max_concurrency=0)
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_client_reused_across_event_loops() -> None:
    client = ManagedClient(FakeBackend(delay_s=0.001), max_concurrency=2)

    async def go() -> None:
        await asyncio.gather(*(client.complete(REQ) for _ in range(4)))

    for _ in range(2):
        run(go())
