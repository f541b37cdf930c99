"""Load (1,000 concurrent calls under a cap) and secrets (the key never lands in a written file)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fault_server import Arrival, fault_server
from rr_helpers import write_questions

from qdanalysis.cli import run as run_cli
from qdanalysis.errors import AuthError, ProviderError
from qdanalysis.runner.llm.base import ChatRequest
from qdanalysis.runner.llm.cache import ResponseCache
from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy
from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

REPO = Path(__file__).resolve().parents[2]
N, CAP = 1000, 16


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS")
def test_thousand_concurrent_requests_hold_the_cap_and_are_all_accounted(
    tmp_path: Path, figures: dict
) -> None:
    def plan(a: Arrival) -> str | None:  # 3 % transient once, 1 % fatal: a few of each fate
        if a.index % 97 == 5 and a.attempt == 0:
            return "503"
        return "400_echo" if a.index % 101 == 7 else None

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())

    base = [
        ChatRequest(model="m", messages=({"role": "user", "content": f"q{i}"},), seed=i)
        for i in range(N)
    ]

    async def go(url: str) -> list[object]:
        backend = OpenAICompatClient(url, api_key_env=None, timeout_s=60)
        policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, jitter=0.0)
        client = ManagedClient(
            backend,
            max_concurrency=CAP,
            retry=policy,
            timeout_s=60,
            cache=ResponseCache(tmp_path / "c.sqlite"),
        )
        try:
            return await asyncio.gather(*(client.complete(r) for r in base), return_exceptions=True)
        finally:
            await backend.aclose()
            client.cache.close()  # type: ignore[union-attr]

    before = _rss_mb()
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    with fault_server(plan=plan, latency_s=0.002, retry_after_s=0) as srv:
        results = asyncio.run(go(srv.base_url))
        arrivals, max_in_flight = srv.snapshot(), srv.max_in_flight
    elapsed = time.perf_counter() - t0
    done.set()
    watcher.join()
    ok = sum(not isinstance(r, BaseException) for r in results)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, ProviderError) and e.kind == "fatal" for e in errors)
    assert ok + len(errors) == N
    assert len(errors) == sum(a.fault == "400_echo" for a in arrivals)
    assert max_in_flight <= CAP
    assert len({a.body_key for a in arrivals}) == N  # every request reached the server once...
    assert len(arrivals) == N + sum(a.fault == "503" for a in arrivals)  # ...plus its retries
    growth = peak[0] - before
    assert growth < 300, f"RSS grew by {growth:.0f} MB for {N} requests"
    figures["load"] = {
        "requests": N,
        "cap": CAP,
        "server_max_in_flight": max_in_flight,
        "ok": ok,
        "errors": len(errors),
        "peak_rss_growth_mb": round(growth),
        "elapsed_s": round(elapsed, 1),
    }
    figures["faults_injected"].update(a.fault for a in arrivals if a.fault)


KEY = "sk-qdaTEST-" + "7f3c9a1e5b2d4c6a8e0f1a2b3c4d5e6f"


def test_key_from_env_reaches_the_server_but_no_written_file(tmp_path: Path, figures: dict) -> None:
    q = write_questions(tmp_path / "q.jsonl", 2)
    out, cache, log = tmp_path / "run", tmp_path / "cache.sqlite", tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "QDA_TEST_KEY": KEY}
    env.pop("OPENAI_API_KEY", None)

    echoed: list[int] = []

    def plan(a: Arrival) -> str | None:  # a leaky server echoes the Authorization header
        if a.model == "agg" and not echoed:
            echoed.append(a.index)
            return "400_echo"
        return None

    with fault_server(plan=plan, expected_key=KEY) as srv:
        cmd = [
            sys.executable,
            "-m",
            "qdanalysis.run",
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
            "--base-url",
            srv.base_url,
            "--api-key-env",
            "QDA_TEST_KEY",
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--no-progress",
            "-vv",
            "--max-tokens",
            "32",
        ]
        with open(log, "w") as fh:
            done = subprocess.run(
                cmd, env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=120
            )
        arrivals = srv.snapshot()
    # the echoed 400 is a fatal error row: the run says so with "some calls failed"
    assert done.returncode == run_cli.EXIT_SOME_FAILED, log.read_text()[-2000:]
    assert arrivals
    assert all(a.auth_ok for a in arrivals)  # the key was sent, from the environment
    assert "DEBUG" in log.read_text()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != q]
    assert {"rows.jsonl", "outputs.jsonl", "cache.sqlite", "run.log"} <= {p.name for p in written}
    hits = [p.name for p in written if KEY.encode() in p.read_bytes()]
    assert hits == []
    stored = (out / "rows.jsonl").read_text()
    assert "***" in stored  # the echoed key was scrubbed from the stored error message
    figures["secrets"] = {"files_grepped": len(written), "key_found_in": 0}


def test_key_absent_from_reprs_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDA_TEST_KEY", KEY)
    with fault_server(
        plan=lambda a: "400_echo" if a.index == 0 else None, expected_key=KEY + "x"
    ) as srv:
        backend = OpenAICompatClient(srv.base_url, api_key_env="QDA_TEST_KEY")
        client = ManagedClient(backend, retry=RetryPolicy(max_attempts=1))
        req = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},))
        caught: list[ProviderError] = []

        async def twice() -> None:
            for _ in range(2):  # the leaky 400, then a 401 (wrong key)
                try:
                    await client.complete(req)
                except ProviderError as exc:
                    caught.append(exc)
            await backend.aclose()

        asyncio.run(twice())
    assert isinstance(caught[1], AuthError)
    texts = [repr(backend), repr(client), str(dataclasses.asdict(req))]
    texts += [f"{e!s} {e!r} {e.__cause__!r} {e.__context__!r}" for e in caught]
    assert not [t for t in texts if KEY in t]
    assert KEY not in repr(vars(backend).get("_clients"))
