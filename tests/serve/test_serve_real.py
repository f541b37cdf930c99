"""Served ensembles over real upstreams: the tiny random Llama behind the toolkit's server and
in process, and an OpenAI-compatible upstream that streams (a served ensemble itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import StreamingMock, collect, ensemble, openai_client, serve_model, tiny_model_dir

from qdanalysis.runner.llm.openai_compat import OpenAICompatClient
from qdanalysis.runner.moa import method_configs
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.serve import Ensemble

CHAT = [{"role": "user", "content": "Say something."}]


def test_upstream_stream_is_relayed_chunk_by_chunk(serve: Any) -> None:
    # Upstream: an OpenAI-compatible server that streams (a served single model over a mock
    # that streams word by word); downstream: Self-MoA over it through OpenAICompatClient.
    up = serve([ensemble("single", name="m", proposers=["m"])], StreamingMock())
    (spec,) = method_configs("self_moa", proposers=["m"], aggregator="m", n_samples=3)
    url = serve([Ensemble(name="moa", spec=spec)], OpenAICompatClient(up, api_key_env=None))
    with openai_client(url) as oa:
        plain = oa.chat.completions.create(model="moa", messages=CHAT, seed=3)
        (text,), n_pieces = collect(
            list(oa.chat.completions.create(model="moa", messages=CHAT, seed=3, stream=True))
        )
    assert text == plain.choices[0].message.content
    assert n_pieces == len(text.split(" ")) > 3
    refs = plain.model_extra["x_moa"]["references"]
    assert len(refs) == 3
    assert all(r["prompt_tokens"] for r in refs)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _tiny_self_moa(model: str) -> Ensemble:
    (spec,) = method_configs("self_moa", proposers=[model], aggregator=model, n_samples=3)
    return Ensemble(name="tiny-moa", spec=spec, options=RunOptions(max_tokens=12))


@pytest.mark.slow
def test_tiny_llama_behind_the_local_server(serve: Any, tiny_dir: Path) -> None:
    with serve_model(tiny_dir) as upstream:
        url = serve([_tiny_self_moa("tiny-llama")], OpenAICompatClient(upstream, api_key_env=None))
        with openai_client(url, timeout=300) as oa:
            plain = oa.chat.completions.create(model="tiny-moa", messages=CHAT, max_tokens=8)
            many = oa.chat.completions.create(model="tiny-moa", messages=CHAT, n=2, max_tokens=8)
            stream = list(
                oa.chat.completions.create(
                    model="tiny-moa",
                    messages=CHAT,
                    max_tokens=8,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
    x = plain.model_extra["x_moa"]
    assert [r["status"] for r in x["references"]] == ["ok"] * 3
    assert plain.usage.completion_tokens == sum(
        c["completion_tokens"] for c in x["references"] + x["calls"]
    )
    assert x["calls"][0]["completion_tokens"] <= 8  # the request's max_tokens, aggregator only
    assert len(many.choices) == 2
    (text,), _ = collect(stream)
    assert text
    assert stream[-1].usage.total_tokens > 0


@pytest.mark.slow
def test_tiny_llama_in_process(serve: Any, tiny_dir: Path) -> None:
    from qdanalysis.runner.llm.hf_local import HFLocalClient

    backend = HFLocalClient(tiny_dir, device="cpu")
    url = serve([_tiny_self_moa(backend.model_name)], backend)
    with openai_client(url, timeout=300) as oa:
        out = oa.chat.completions.create(model="tiny-moa", messages=CHAT, max_tokens=6, n=2)
    assert len(out.choices) == 2
    assert len(out.model_extra["x_moa"]["references"]) == 3
