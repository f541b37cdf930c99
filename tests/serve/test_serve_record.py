"""A served deployment is recorded in the run-store schema and reads back as an outputs table."""

from __future__ import annotations

from pathlib import Path

from conftest import collect, ensemble, openai_client

from qdanalysis.outputs import load_outputs
from qdanalysis.runner.llm.managed import ManagedClient
from qdanalysis.runner.serve import build_app
from qdanalysis.runner.store import RunStore
from qdanalysis.testing import MockClient

CHAT = [{"role": "user", "content": "Pick a number."}]


def test_served_requests_become_outputs_rows(tmp_path: Path) -> None:
    from fixtures import serve_app

    store = RunStore(tmp_path / "served")
    app = build_app([ensemble("self_moa", n_samples=3)], ManagedClient(MockClient()), store=store)
    with serve_app(app) as url, openai_client(url) as oa:
        plain = oa.chat.completions.create(model="self_moa", messages=CHAT, n=2)
        chunks = list(oa.chat.completions.create(model="self_moa", messages=CHAT, stream=True))
    out = load_outputs(store.write_outputs(tmp_path / "outputs.jsonl"))
    by_request = out.groupby("question_id")
    assert set(by_request.groups) == {plain.id, chunks[0].id}
    rows = out[out["question_id"] == plain.id]
    assert sorted(rows["role"]) == ["aggregator"] * 2 + ["proposer"] * 3
    finals = rows[rows["role"] == "aggregator"].sort_values("sample_index")
    assert list(finals["output"]) == [c.message.content for c in plain.choices]
    streamed = out[(out["question_id"] == chunks[0].id) & (out["role"] == "aggregator")]
    assert list(streamed["output"]) == collect(chunks)[0]
    assert out["chat_id"].nunique() == 1  # the same chat both times
