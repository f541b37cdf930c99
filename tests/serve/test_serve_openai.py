"""The official ``openai`` SDK against ensembles served over the mock: plain, streamed, n."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import collect, ensemble, openai_client

from qdanalysis.runner.llm.base import ChatRequest
from qdanalysis.testing import MockClient

METHODS = ("self_moa", "mixed_moa", "self_moa_seq", "plurality", "usc", "single")
CHAT = [{"role": "user", "content": "What is 2 + 2?"}]


def test_models_lists_every_ensemble(serve: Any) -> None:
    url = serve([ensemble(m) for m in METHODS])
    with openai_client(url) as oa:
        listed = oa.models.list()
    assert [m.id for m in listed.data] == list(METHODS)
    extra = listed.data[0].model_extra["x_moa"]
    assert extra["method"] == "self_moa"
    assert extra["n_references"] == 6


@pytest.mark.parametrize("method", METHODS)
def test_each_method_answers_with_its_final_call(serve: Any, method: str) -> None:
    backend = MockClient()
    url = serve([ensemble(method)], backend)
    with openai_client(url) as oa:
        out = oa.chat.completions.create(model=method, messages=CHAT)
    x = out.model_extra["x_moa"]
    assert out.model == method
    assert x["method"] == method
    n_refs = {"mixed_moa": 2, "single": 0}.get(method, 6)
    assert len(x["references"]) == n_refs == x["n_references"]
    assert all(r["status"] == "ok" and r["completion_tokens"] > 0 for r in x["references"])
    # usage is every paid call: references plus the calls after them, nothing else
    calls = x["references"] + x["calls"]
    assert out.usage.prompt_tokens == sum(c["prompt_tokens"] for c in calls)
    assert out.usage.completion_tokens == sum(c["completion_tokens"] for c in calls)
    assert len(backend.calls) == len(calls)
    if method != "plurality":
        final = backend.calls[-1]
        assert out.choices[0].message.content == backend.responder(final)
        assert [c["role"] for c in x["calls"]] == ["final"]


def test_request_fields_apply_to_the_final_call_only(serve: Any) -> None:
    backend = MockClient()
    e = ensemble("self_moa", mc={"temperature": 0.9})
    url = serve([e], backend)
    with openai_client(url) as oa:
        oa.chat.completions.create(
            model="self_moa", messages=CHAT, temperature=0.1, max_tokens=33, stop=["END"]
        )
    *refs, final = backend.calls
    assert (final.model, final.temperature, final.max_tokens, final.stop) == (
        "agg",
        0.1,
        33,
        ("END",),
    )
    assert {(r.temperature, r.max_tokens, r.stop) for r in refs} == {(0.9, 2048, ())}
    assert len({r.sample_index for r in refs}) == 6


def test_seed_derives_every_seed(serve: Any) -> None:
    backend = MockClient()
    url = serve([ensemble("self_moa")], backend)
    with openai_client(url) as oa:
        texts = [
            oa.chat.completions.create(model="self_moa", messages=CHAT, seed=s)
            .choices[0]
            .message.content
            for s in (1, 1, 2)
        ]
        fresh = [
            oa.chat.completions.create(model="self_moa", messages=CHAT).model_extra["x_moa"]
            for _ in range(2)
        ]
    assert fresh[0]["seed"] != fresh[1]["seed"]  # no seed: fresh randomness, like a model
    seeds = [sorted({r.seed for r in backend.calls[i * 7 : i * 7 + 6]}) for i in range(3)]
    assert texts[0] == texts[1]
    assert seeds[0] == seeds[1] != seeds[2]


def test_n_aggregates_the_same_references_n_times(serve: Any) -> None:
    backend = MockClient()
    url = serve([ensemble("self_moa")], backend)
    with openai_client(url) as oa:
        out = oa.chat.completions.create(model="self_moa", messages=CHAT, n=3)
    x = out.model_extra["x_moa"]
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert len({c.message.content for c in out.choices}) == 3
    assert len(x["references"]) == 6
    assert len(x["calls"]) == 3
    finals: list[ChatRequest] = backend.calls[6:]
    assert sorted(r.sample_index for r in finals) == [0, 1, 2]
    assert len({r.seed for r in finals}) == 3
    assert len({json.dumps(r.messages) for r in finals}) == 1  # the same references for all


def test_stream_sends_the_final_text_as_chunks(serve: Any) -> None:
    url = serve([ensemble("self_moa")])
    with openai_client(url) as oa:
        plain = oa.chat.completions.create(model="self_moa", messages=CHAT, seed=5)
        chunks = list(
            oa.chat.completions.create(
                model="self_moa",
                messages=CHAT,
                seed=5,
                n=2,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(c.object == "chat.completion.chunk" and c.model == "self_moa" for c in chunks)
    text = ["", ""]
    finish = {}
    for c in chunks:
        for ch in c.choices:
            text[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    assert text[0] == plain.choices[0].message.content
    assert text[1] != text[0]
    assert finish == {0: "stop", 1: "stop"}
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.total_tokens > plain.usage.total_tokens
    assert len(last.model_extra["x_moa"]["calls"]) == 2


def test_plurality_refuses_n(serve: Any) -> None:
    import openai

    url = serve([ensemble("plurality")])
    with openai_client(url) as oa, pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model="plurality", messages=CHAT, n=2)
    assert err.value.body["code"] == "invalid_n"


@pytest.mark.parametrize(
    ("method", "mc", "roles"),
    [
        ("self_moa_seq", {"window": 4, "repeats": 2}, ["intermediate", "final"]),
        ("mixed_moa", {"layers": 2}, ["intermediate", "intermediate", "final"]),
    ],
)
def test_only_the_last_step_is_the_final_call(
    serve: Any, method: str, mc: dict[str, int], roles: list[str]
) -> None:
    backend = MockClient()
    url = serve([ensemble(method, mc=mc)], backend)
    with openai_client(url) as oa:
        chunks = list(
            oa.chat.completions.create(
                model=method, messages=CHAT, seed=2, max_tokens=40, stream=True
            )
        )
    x = chunks[-1].model_extra["x_moa"]
    assert sorted(c["role"] for c in x["calls"]) == sorted(roles)
    last = backend.calls[-1]
    assert last.max_tokens == 40  # the request's max_tokens reached the last step only
    assert {r.max_tokens for r in backend.calls[:-1]} == {2048}
    texts, n = collect(chunks)
    assert texts == [backend.responder(last)]
    assert n == 1
