"""Faults on the wire: each kind is retried or recorded, Retry-After is honoured, no half rows."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from pathlib import Path

import pytest
from fault_server import Arrival, fault_server, first_attempts
from rr_helpers import comparable, store_lines, write_questions

from qdanalysis.cli import run as run_cli
from qdanalysis.errors import ProviderError
from qdanalysis.runner.llm.base import ChatRequest
from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy
from qdanalysis.runner.llm.openai_compat import OpenAICompatClient
from qdanalysis.runner.moa import method_configs, run_experiment
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.store import ROW_KEY, RunStore
from qdanalysis.runner.tasks import Question

REQ = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},), seed=3)
TRANSIENT = ("429", "500", "503", "truncated", "drop", "slow")
FATAL = ("malformed", "400_echo")


def _managed(base_url: str, sleeps: list[float], **kw: object) -> ManagedClient:
    async def record(s: float) -> None:
        sleeps.append(s)

    policy = RetryPolicy(max_attempts=4, base_delay_s=0.05, jitter=0.0, sleep=record)
    backend = OpenAICompatClient(base_url, api_key_env=None, timeout_s=5.0)
    return ManagedClient(backend, retry=policy, timeout_s=0.5, **kw)  # type: ignore[arg-type]


async def _complete(client: ManagedClient, req: ChatRequest = REQ):
    try:
        return await client.complete(req)
    finally:
        await client.client.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_fault_is_retried_once_then_answered(kind: str, figures: dict) -> None:
    sleeps: list[float] = []
    with fault_server(plan=first_attempts(kind), retry_after_s=0.25, slow_s=1.5) as srv:
        client = _managed(srv.base_url, sleeps)
        resp = asyncio.run(_complete(client))
        arrivals = srv.snapshot()
    assert "[sk:" in resp.text
    assert [a.fault for a in arrivals] == [kind, None]
    assert client.ledger.summary()["retries"] == 1
    # Retry-After (429, 503) is waited for as sent; other faults back off by base_delay_s
    assert sleeps == ([0.25] if kind in ("429", "503") else [0.05])
    figures["faults_injected"].update([kind])


@pytest.mark.parametrize("kind", FATAL)
def test_fatal_fault_is_not_retried(kind: str, figures: dict) -> None:
    sleeps: list[float] = []
    with fault_server(plan=first_attempts(kind)) as srv:
        client = _managed(srv.base_url, sleeps)
        with pytest.raises(ProviderError) as info:
            asyncio.run(_complete(client))
        arrivals = srv.snapshot()
    assert info.value.kind == "fatal"
    assert len(arrivals) == 1
    assert sleeps == []
    assert client.ledger.summary()["errors"] == 1
    figures["faults_injected"].update([kind])


def test_persistent_fault_gives_up_after_max_attempts(figures: dict) -> None:
    sleeps: list[float] = []
    with fault_server(plan=lambda a: "500") as srv:
        client = _managed(srv.base_url, sleeps)
        with pytest.raises(ProviderError, match="HTTP 500"):
            asyncio.run(_complete(client))
        arrivals = srv.snapshot()
    assert len(arrivals) == 4  # max_attempts, no more
    assert sleeps == [0.05, 0.1, 0.2]  # exponential backoff, no jitter
    figures["faults_injected"].update(["500"] * 4)


def test_retry_after_gaps_seen_by_the_server(figures: dict) -> None:
    """With real sleeps the server sees each retry no sooner than Retry-After (generous bound)."""
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.01, jitter=0.0)
    with fault_server(plan=first_attempts("429", "503"), retry_after_s=0.3) as srv:
        backend = OpenAICompatClient(srv.base_url, api_key_env=None, timeout_s=5.0)
        asyncio.run(_complete(ManagedClient(backend, retry=policy)))
        t = [a.t for a in srv.snapshot()]
    assert len(t) == 3
    assert min(b - a for a, b in itertools.pairwise(t)) >= 0.27
    figures["faults_injected"].update(["429", "503"])


def _questions(n: int) -> list[Question]:
    return [
        Question(
            dataset="toy",
            question_id=f"toy/{i}",
            question=f"What is {i} mod 4?",
            reference=str(i % 4),
            task="math",
        )
        for i in range(n)
    ]


def _configs():
    kw = {"aggregator": "agg", "temperature": 0.7}
    return method_configs("self_moa", proposers=["a"], n_samples=3, **kw) + method_configs(
        "mixed_moa", proposers=["a", "b"], **kw
    )


def _chaos(seed: int, rate: float):
    kinds = ("429", "500", "503", "truncated", "drop", "slow", "malformed", "400_echo")

    def plan(a: Arrival) -> str | None:
        if a.attempt >= 2:  # a body faults at most twice, so resumed runs finish
            return None
        r = random.Random(f"{seed}/{a.body_key}/{a.attempt}")
        return r.choice(kinds) if r.random() < rate else None

    return plan


async def _run(base_url: str, store: RunStore) -> object:
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, jitter=0.0)
    backend = OpenAICompatClient(base_url, api_key_env=None, timeout_s=5.0)
    client = ManagedClient(backend, retry=policy, timeout_s=0.4, max_concurrency=4)
    try:
        return await run_experiment(
            _questions(4),
            _configs(),
            client=client,
            store=store,
            options=RunOptions(seed=7, max_tokens=64),
            progress=False,
        )
    finally:
        await backend.aclose()


def test_run_under_chaos_records_errors_resumes_and_matches_a_clean_run(
    tmp_path: Path, figures: dict
) -> None:
    with fault_server() as clean:
        asyncio.run(_run(clean.base_url, RunStore(tmp_path / "clean")))
    reference, _ = store_lines(tmp_path / "clean" / "rows.jsonl")

    store_dir = tmp_path / "chaos"
    with fault_server(plan=_chaos(1, 0.4), slow_s=1.0) as srv:
        n_resumes = 0
        for _ in range(4):
            summary = asyncio.run(_run(srv.base_url, RunStore(store_dir)))
            if not summary.n_errors and not summary.n_failed_configs:  # type: ignore[attr-defined]
                break
            n_resumes += 1
        faults = srv.fault_counts()
    rows, truncated = store_lines(store_dir / "rows.jsonl")  # raises on a half row
    assert not truncated
    for r in rows:
        assert r["status"] in ("ok", "error")
        assert all(c in r for c in ROW_KEY)
        assert (r["status"] == "error") == bool(r.get("error"))
        assert r["status"] == "ok" or r["output"] == ""
    assert {r["status"] for r in rows} == {"ok", "error"}  # some faults outlived retries
    assert n_resumes >= 1
    assert {"malformed", "400_echo"} & set(faults)
    pd_ref, pd_got = comparable(reference), comparable(rows)
    assert pd_got.equals(pd_ref)
    figures["faults_injected"].update(faults)
    figures["chaos_run"] = {
        "rows": len(pd_got),
        "error_rows_then_resumed": sum(r["status"] == "error" for r in rows),
        "resumes": n_resumes,
    }


def test_cli_with_faults_writes_whole_rows_and_resumes(
    tmp_path: Path, recorded_sleeps: list[float], figures: dict, capsys: pytest.CaptureFixture
) -> None:
    q = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "run"
    plan = first_attempts("429", "503")  # every body: rate limited, then unavailable, then ok

    fatal_sent: list[int] = []

    def plan_with_fatal(a: Arrival) -> str | None:
        if a.model == "agg" and not fatal_sent:  # the first aggregator call fails for good
            fatal_sent.append(a.index)
            return "malformed"
        return plan(a)

    args = [
        "--questions",
        str(q),
        "--method",
        "self_moa",
        "--proposers",
        "a",
        "--aggregator",
        "agg",
        "--n-samples",
        "2",
        "--backend",
        "openai",
        "--api-key-env",
        "",
        "--out",
        str(out),
        "--max-tokens",
        "32",
        "--no-progress",
        "--cache",
        str(tmp_path / "cache.sqlite"),
    ]
    with fault_server(plan=plan_with_fatal, retry_after_s=0.5) as srv:
        base = ["--base-url", srv.base_url]
        assert run_cli.main([*args, *base]) == run_cli.EXIT_SOME_FAILED
        assert "error: some call failed: 1 of 9 new rows" in capsys.readouterr().err
        first = store_lines(out / "rows.jsonl")[0]
        assert any(r["status"] == "error" for r in first)
        assert run_cli.main([*args, *base]) == 0  # resume retries the error rows
        faults = srv.fault_counts()
    capsys.readouterr()
    _rows, truncated = store_lines(out / "rows.jsonl")
    assert not truncated
    final = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    assert len(final) == 3 * 2 + 3
    assert all(r["status"] == "ok" for r in final)
    assert 0.5 in recorded_sleeps  # Retry-After honoured through the CLI
    figures["faults_injected"].update(faults)
