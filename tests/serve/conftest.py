"""Fixtures of the serving tests: ensembles over the mock backend, the app on loopback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner" / "llm"))
from fixtures import free_port, serve_app, serve_model, tiny_model_dir

from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy
from qdanalysis.runner.moa import method_configs
from qdanalysis.runner.serve import Ensemble, ServeLimits, build_app
from qdanalysis.testing import MockClient

__all__ = ["free_port", "serve_model", "tiny_model_dir"]

NO_WAIT = RetryPolicy(max_attempts=3, wait=False)


def ensemble(method: str = "self_moa", *, name: str | None = None, **kw: Any) -> Ensemble:
    """An ensemble of ``method`` over mock models ``a`` (and ``b`` for mixed_moa)."""
    proposers = kw.pop("proposers", ["a", "b"] if method == "mixed_moa" else ["a"])
    n_samples = kw.pop("n_samples", 6)
    (spec, *_) = method_configs(
        method, proposers=proposers, aggregator="agg", n_samples=n_samples, **kw.pop("mc", {})
    )
    return Ensemble(name=name or method, spec=spec, **kw)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(ensembles, backend=None, limits=None) -> base_url`` on loopback."""
    stack: list[Any] = []

    def start(
        ensembles: Sequence[Ensemble],
        backend: Any = None,
        limits: ServeLimits | None = None,
        **managed: Any,
    ) -> str:
        client = ManagedClient(backend or MockClient(), retry=NO_WAIT, **managed)
        cm = serve_app(build_app(ensembles, client, limits))
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def openai_client(base_url: str, **kw: Any) -> Any:
    """The official SDK pointed at ``base_url``, its own retries off (so errors show)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key=kw.pop("api_key", "none"), max_retries=0, **kw)


class HangingBackend(MockClient):
    """The mock, but requests matching ``when`` never answer (an upstream that hangs)."""

    def __init__(self, when: Callable[[Any], bool], **kw: Any) -> None:
        super().__init__(**kw)
        self.when = when

    async def complete(self, request: Any) -> Any:
        if self.when(request):
            import asyncio

            await asyncio.sleep(3600)
        return await super().complete(request)


class StreamingMock(MockClient):
    """The mock with ``complete_stream``: its text arrives word by word."""

    async def complete_stream(self, request: Any, on_delta: Callable[[str], None]) -> Any:
        resp = await self.complete(request)
        for i, word in enumerate(resp.text.split(" ")):
            on_delta(word if i == 0 else " " + word)
        return resp


def collect(chunks: Sequence[Any]) -> tuple[list[str], int]:
    """Choice texts of a streamed answer, and how many chunks carried text."""
    texts: dict[int, str] = {}
    n = 0
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            n += bool(ch.delta.content)
    return [texts[i] for i in sorted(texts)], n
