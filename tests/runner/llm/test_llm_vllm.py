"""VLLMOfflineClient: the missing-dependency path here, real generation on a GPU machine."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from qdanalysis.errors import MissingDependencyError
from qdanalysis.runner.llm import ChatRequest

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_names_the_pip_command() -> None:
    from qdanalysis.runner.llm.vllm_offline import VLLMOfflineClient

    with pytest.raises(MissingDependencyError, match=r"pip install 'qdanalysis\[gpu\]'"):
        VLLMOfflineClient("any-model")


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_VLLM and _has_cuda()), reason="needs vllm and CUDA")
def test_vllm_generates_distinct_seeded_samples(smollm2_path: Path) -> None:
    from qdanalysis.runner.llm.vllm_offline import VLLMOfflineClient

    client = VLLMOfflineClient(str(smollm2_path), gpu_memory_utilization=0.3, max_model_len=2048)
    msgs = ({"role": "user", "content": "What is the capital of France?"},)
    greedy = ChatRequest(model="smollm2", messages=msgs, temperature=0.0, max_tokens=24)
    sampled = ChatRequest(model="smollm2", messages=msgs, temperature=0.7, max_tokens=24, seed=3)

    async def go() -> tuple[str, list[str], list[str]]:
        g, batch = await asyncio.gather(client.complete(greedy), client.complete_n(sampled, 4))
        again = await client.complete_n(sampled, 4)
        return g.text, [r.text for r in batch], [r.text for r in again]

    g, batch, again = asyncio.run(go())
    assert "Paris" in g
    assert len(set(batch)) == 4
    assert batch == again
