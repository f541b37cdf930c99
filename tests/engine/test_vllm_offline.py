"""The ``vllm`` offline backend (``vllm.LLM`` in-process) on the CPU build, in its own environment.

vLLM cannot share the project's environment (its torch/transformers pins differ), so each test
drives a subprocess of the vLLM environment's interpreter with this checkout on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from engine_fixtures import QUESTIONS, REPO, THREADS

from qdanalysis.testing.vllm_server import vllm_env

pytestmark = pytest.mark.slow

_CLIENT_SCRIPT = """
import asyncio, json, sys
from qdanalysis.runner.llm import ChatRequest
from qdanalysis.runner.llm.vllm_offline import VLLMOfflineClient

client = VLLMOfflineClient(sys.argv[1])
sampled = ChatRequest(model="smollm2", messages=({"role": "user", "content": "Name a colour."},),
                      temperature=0.8, max_tokens=16, seed=5)
greedy = ChatRequest(model="smollm2",
                     messages=({"role": "user", "content": "What is the capital of France?"},),
                     temperature=0.0, max_tokens=16)

async def go():
    batch, g = await asyncio.gather(client.complete_n(sampled, 4), client.complete(greedy))
    again = await client.complete_n(sampled, 4)
    return batch, g, again

batch, g, again = asyncio.run(go())
print("RESULT " + json.dumps({
    "batch": [r.text for r in batch], "again": [r.text for r in again], "greedy": g.text,
    "engine_batch": batch[0].extra.get("engine_batch"),
    "tokens": [r.completion_tokens for r in batch], "prompt_tokens": g.prompt_tokens,
    "kwargs": client.engine_kwargs,
}))
"""


def _env() -> dict[str, str]:
    env = vllm_env(threads=THREADS)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def test_offline_client_batches_and_reproduces_seeded_samples(
    vllm_py: Path, smollm2_path: Path
) -> None:
    res = subprocess.run(
        [str(vllm_py), "-c", _CLIENT_SCRIPT, str(smollm2_path)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert "Paris" in out["greedy"]
    assert len(set(out["batch"])) >= 3
    assert out["batch"] == out["again"]
    assert out["engine_batch"] == 2  # the sampled and the greedy request went in one generate
    assert all(t and t > 0 for t in out["tokens"])
    assert out["prompt_tokens"] > 0
    assert out["kwargs"]["enable_chunked_prefill"] is False  # the CPU defaults were applied


def test_run_cli_on_the_offline_backend(vllm_py: Path, smollm2_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        str(vllm_py),
        "-m",
        "qdanalysis.run",
        *("--questions", str(QUESTIONS / "csqa_20.jsonl"), "--limit", "3"),
        *("--method", "self_moa", "--proposers", "smollm2", "--aggregator", "smollm2"),
        *("--n-samples", "4", "--max-tokens", "32", "--seed", "0", "--concurrency", "8"),
        *("--backend", "vllm", "--model-path", f"smollm2={smollm2_path}"),
        *("--out", str(out), "--no-progress"),
    ]
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines() if x]
    assert {r["status"] for r in rows} == {"ok"}
    assert sum(r["role"] == "proposer" for r in rows) == 3 * 4
    assert sum(r["role"] == "aggregator" for r in rows) == 3
    assert all(r["completion_tokens"] > 0 and r["prompt_tokens"] > 0 for r in rows)
    assert (out / "outputs.jsonl").is_file()
