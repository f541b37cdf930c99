"""A 200 whose generation the engine aborted (finish_reason 'abort' or 'error', as a dying vLLM
engine sends) is a failed call: retried, never cached, an error row, a nonzero exit code."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from qdanalysis.cli import run as run_cli
from qdanalysis.runner.llm.cache import ResponseCache
from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy
from qdanalysis.runner.moa import method_configs, run_experiment
from qdanalysis.runner.store import RunStore
from qdanalysis.runner.tasks import Question
from qdanalysis.testing import MockClient


class _Aborting(MockClient):
    """Answers, but every answer of model 'a' comes back aborted after ``healthy`` calls."""

    def __init__(self, healthy: int) -> None:
        super().__init__()
        self.healthy = healthy

    async def complete(self, request):
        index = len(self.calls)  # before this call is recorded
        resp = await super().complete(request)
        if request.model == "a" and index >= self.healthy:
            return dataclasses.replace(resp, text="", finish_reason="abort")
        return resp


def test_aborted_generations_are_error_rows_and_fail_the_exit_code(tmp_path: Path) -> None:
    qs = [
        Question(
            dataset="d", question_id=f"q{i}", question=f"{i}+1?", reference=str(i + 1), task="math"
        )
        for i in range(5)
    ]
    backend = _Aborting(healthy=4)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = ManagedClient(backend, cache=cache, retry=RetryPolicy(max_attempts=2, wait=False))
    configs = method_configs("self_moa", proposers=["a"], aggregator="agg", n_samples=3)
    summary = asyncio.run(
        run_experiment(qs, configs, client=client, store=RunStore(tmp_path / "s"), progress=False)
    )
    assert summary.n_errors > 0
    assert run_cli.exit_code(summary) == run_cli.EXIT_SOME_FAILED
    errors = [r for r in RunStore(tmp_path / "s").rows(status="error")]
    assert any("finish_reason 'abort'" in r["error"] for r in errors)
    assert client.ledger.summary()["retries"] > 0  # retried before giving up
    aborted = [r for r in backend.calls[4:] if r.model == "a"]
    assert all(cache.get(client.endpoint, r) is None for r in aborted)  # never cached
    cache.close()
