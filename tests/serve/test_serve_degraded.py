"""Degraded mode: too few references, upstream errors and timeouts give OpenAI errors, no hang."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from conftest import HangingBackend, ensemble, openai_client, serve_app

from qdanalysis.runner.llm.openai_compat import OpenAICompatClient
from qdanalysis.runner.llm.server import create_app
from qdanalysis.runner.serve import ServeLimits
from qdanalysis.testing import MockClient, fail_times
from qdanalysis.testing.faults import FaultSpec, FaultyBackend

CHAT = [{"role": "user", "content": "Name a colour."}]


def _refs_fail(k: int, kind: str = "transient") -> MockClient:
    """The mock whose references with sample_index < k always fail with ``kind``."""
    rule = fail_times(-1, kind=kind, when=lambda r: r.model == "a" and r.sample_index < k)
    return MockClient(failure=rule)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("transient", 502, "upstream_error"),
        ("rate_limit", 503, "upstream_rate_limited"),
    ],
)
def test_too_few_references_is_an_error_not_a_smaller_ensemble(
    serve: Any, kind: str, status: int, code: str
) -> None:
    backend = _refs_fail(3, kind)
    url = serve([ensemble("self_moa", min_references=4)], backend)
    with openai_client(url) as oa, pytest.raises(openai.APIStatusError) as err:
        oa.chat.completions.create(model="self_moa", messages=CHAT)
    e = err.value
    assert e.status_code == status
    assert e.body["code"] == code
    assert e.body["type"] == "upstream_error"
    assert "expected at least 4 of 6 references to succeed; got 3" in e.body["message"]
    assert all(r.model == "a" for r in backend.calls)  # the aggregator was never asked


def test_enough_references_answer_and_say_which_failed(serve: Any) -> None:
    url = serve([ensemble("self_moa", min_references=4)], _refs_fail(2))
    with openai_client(url) as oa:
        out = oa.chat.completions.create(model="self_moa", messages=CHAT)
    x = out.model_extra["x_moa"]
    assert x["n_references"] == 4
    assert x["min_references"] == 4
    statuses = [r["status"] for r in sorted(x["references"], key=lambda r: r["sample_index"])]
    assert statuses == ["error", "error", "ok", "ok", "ok", "ok"]
    assert "mock HTTP 500" in x["references"][0]["error"] + x["references"][1]["error"]


def test_default_needs_every_reference(serve: Any) -> None:
    url = serve([ensemble("self_moa")], _refs_fail(1))
    with openai_client(url) as oa, pytest.raises(openai.APIStatusError) as err:
        oa.chat.completions.create(model="self_moa", messages=CHAT)
    assert err.value.status_code == 502
    assert "6 of 6" in err.value.body["message"]


def test_hanging_references_time_out_with_504(serve: Any) -> None:
    backend = HangingBackend(lambda r: r.model == "a" and r.sample_index == 0)
    limits = ServeLimits(proposer_timeout_s=0.5)
    url = serve([ensemble("self_moa")], backend, limits)
    start = time.perf_counter()
    with openai_client(url, timeout=30) as oa, pytest.raises(openai.APIStatusError) as err:
        oa.chat.completions.create(model="self_moa", messages=CHAT)
    assert err.value.status_code == 504
    assert err.value.body["code"] == "upstream_timeout"
    assert time.perf_counter() - start < 20  # bounded by the role timeout, not the hang


def test_aggregator_failure_is_502_and_streams_nothing(serve: Any) -> None:
    rule = fail_times(-1, when=lambda r: r.model == "agg")
    url = serve([ensemble("self_moa")], MockClient(failure=rule))
    with openai_client(url) as oa:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as err:
                oa.chat.completions.create(model="self_moa", messages=CHAT, stream=stream)
            assert err.value.status_code == 502
            assert "the final call failed" in err.value.body["message"]


def test_hanging_aggregator_times_out_with_504(serve: Any) -> None:
    backend = HangingBackend(lambda r: r.model == "agg")
    url = serve([ensemble("usc")], backend, ServeLimits(aggregator_timeout_s=0.5))
    with openai_client(url) as oa, pytest.raises(openai.APIStatusError) as err:
        oa.chat.completions.create(model="usc", messages=CHAT)
    assert err.value.status_code == 504


def test_upstream_http_429_and_5xx_are_retried_by_the_managed_client(serve: Any) -> None:
    # A real HTTP upstream (the toolkit's own server) whose first two calls answer HTTP 429.
    class Batched(MockClient):
        async def complete_n(self, request: Any, n: int) -> list[Any]:
            return [await self.complete(request) for _ in range(n)]

    faulty = FaultyBackend(Batched(), FaultSpec(status=429, count=2, retry_after=0.0))
    with serve_app(create_app(faulty, model_name="a")) as upstream_a:
        backend = OpenAICompatClient(upstream_a, api_key_env=None)
        e = ensemble("single")
        url = serve([e], backend)
        with openai_client(url) as oa:
            outs = [oa.chat.completions.create(model="single", messages=CHAT) for _ in range(3)]
    assert faulty.calls == 2 + 3  # two refused and retried, then one call per request
    assert all(o.choices[0].message.content for o in outs)
