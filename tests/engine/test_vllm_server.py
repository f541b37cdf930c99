"""The OpenAI-compatible path against a real vLLM server (CPU build), end to end.

``python -m qdanalysis.run --backend openai`` drives the server with concurrent, seeded, ``n=6``
requests (the pattern that killed vLLM's engine with chunked prefill on); an engine killed mid-run
makes ``run`` exit non-zero.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from engine_fixtures import QUESTIONS, REPO, start_server

from qdanalysis.runner.llm import ChatRequest
from qdanalysis.runner.llm.openai_compat import OpenAICompatClient
from qdanalysis.testing.vllm_server import VLLMServer

pytestmark = pytest.mark.slow


def _posts(server: VLLMServer) -> float:
    """Chat-completion HTTP requests the server answered (its ``/metrics``; vLLM's own request
    counters count each of ``n`` samples as a request)."""
    root = server.base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'handler="/v1/chat/completions"' in line
    )


def _run_cmd(url: str, out: Path, *, limit: int, concurrency: int = 8) -> list[str]:
    return [
        sys.executable,
        "-m",
        "qdanalysis.run",
        *("--questions", str(QUESTIONS / "csqa_20.jsonl"), "--limit", str(limit)),
        *("--method", "self_moa", "--proposers", "smollm2", "--aggregator", "smollm2"),
        *("--n-samples", "6", "--max-tokens", "48", "--seed", "0"),
        *("--backend", "openai", "--base-url", url, "--api-key-env", ""),
        *("--concurrency", str(concurrency), "--timeout", "300"),
        *("--out", str(out), "--no-progress"),
    ]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line]


def test_run_self_moa_n6_concurrent_seeded_on_vllm(vllm_server: VLLMServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = _posts(vllm_server)
    res = subprocess.run(
        _run_cmd(vllm_server.base_url, out, limit=4),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    assert {r["status"] for r in rows} == {"ok"}
    proposers = [r for r in rows if r["role"] == "proposer"]
    aggregators = [r for r in rows if r["role"] == "aggregator"]
    assert len(proposers) == 4 * 6
    assert len(aggregators) == 4
    # n=6 reached the engine as one request per question: 4 proposer + 4 aggregator requests.
    assert _posts(vllm_server) - before == 8
    for qid in {r["question_id"] for r in proposers}:
        texts = [r["output"] for r in proposers if r["question_id"] == qid]
        assert len(set(texts)) >= 5, texts  # six seeded samples, (almost surely) distinct
    assert all(r["prompt_tokens"] > 0 for r in rows)
    assert all(r["completion_tokens"] > 0 for r in aggregators)
    # vLLM reports one usage for all n choices; it is shared so each row has its tokens.
    assert all(r["completion_tokens"] > 0 for r in proposers)
    # A rerun finds every row in the store and asks the engine nothing.
    again = subprocess.run(
        _run_cmd(vllm_server.base_url, out, limit=4),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert _posts(vllm_server) - before == 8


def test_seeded_n_samples_are_distinct_and_reproducible(vllm_server: VLLMServer) -> None:
    client = OpenAICompatClient(vllm_server.base_url, api_key_env=None)
    req = ChatRequest(
        model="smollm2",
        messages=({"role": "user", "content": "Name a colour."},),
        temperature=0.8,
        max_tokens=16,
        seed=11,
    )

    async def go() -> tuple[list[str], list[str], str]:
        a, b = await asyncio.gather(client.complete_n(req, 4), client.complete_n(req, 4))
        greedy = await client.complete(
            ChatRequest(
                model="smollm2",
                messages=({"role": "user", "content": "What is the capital of France?"},),
                temperature=0.0,
                max_tokens=16,
            )
        )
        await client.aclose()
        return [r.text for r in a], [r.text for r in b], greedy.text

    a, b, greedy = asyncio.run(go())
    assert a == b  # same seed, same samples, even when the two requests are batched together
    assert len(set(a)) >= 3
    assert "Paris" in greedy


def test_engine_death_mid_run_exits_nonzero(
    vllm_py: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    server = start_server(vllm_py, smollm2_path, tmp_path)
    out = tmp_path / "run"
    try:
        proc = subprocess.Popen(
            _run_cmd(server.base_url, out, limit=12, concurrency=2),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "rows.jsonl").is_file() and (out / "rows.jsonl").stat().st_size > 0:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before the engine could be killed"
        assert server.kill_engine(), "no engine process found under the server"
        _, err = proc.communicate(timeout=1200)
    finally:
        server.stop()
    assert proc.returncode in (3, 4), err[-3000:]
    rows = _rows(out)
    assert any(r["status"] == "ok" for r in rows)
    assert any(r["status"] == "error" for r in rows)
    assert "call failed" in err


def test_replica_client_spreads_over_live_replicas_and_skips_a_dead_one(
    vllm_server: VLLMServer,
) -> None:
    from qdanalysis.runner.llm.replicas import ReplicaClient
    from qdanalysis.testing.vllm_server import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    client = ReplicaClient([vllm_server.base_url, dead], api_key_env=None, timeout_s=60)
    req = ChatRequest(
        model="smollm2",
        messages=({"role": "user", "content": "Say hi."},),
        temperature=0.7,
        max_tokens=8,
        seed=2,
    )

    async def go() -> list[str]:
        await client.ping()  # the dead replica is noticed here and skipped from now on
        out = await asyncio.gather(*(client.complete_n(req, 2) for _ in range(4)))
        await client.aclose()
        return [r.text for batch in out for r in batch]

    texts = asyncio.run(go())
    assert len(texts) == 8
    assert client.calls == [4, 0]  # every call went to the live replica
