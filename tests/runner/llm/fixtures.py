"""Reusable test helpers for the LLM layer (plain functions and context managers, no pytest).

- ``tiny_model_dir(root)``: write the tiny random Llama once under ``root``.
- ``smollm2_dir()``: SmolLM2-135M-Instruct converted once into ``$QDANALYSIS_MODEL_CACHE``
  (default ``~/.cache/qdanalysis/models``).
- ``serve_model(model_dir, ...)``: run ``python -m qdanalysis.runner.llm.server`` on a free
  loopback port in a subprocess; yields the ``/v1`` base URL; kills the process on exit.
- ``serve_app(app)``: run an ASGI app (e.g. ``create_app(FakeBackend(), ...)``) with uvicorn in a
  thread on a free loopback port; yields the ``/v1`` base URL.
- ``FakeBackend``: scripted ChatClient for orchestration tests (errors, delays, in-flight count).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from qdanalysis.errors import ProviderError
from qdanalysis.runner.llm.base import ChatRequest, ChatResponse
from qdanalysis.testing.local_models import default_model_cache, make_tiny_llama, prepare_smollm2

REPO_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (closed again; tiny race accepted in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_model_dir(root: Path) -> Path:
    """Build the tiny random-weights Llama under ``root/tiny-llama`` once."""
    out = root / "tiny-llama"
    if not (out / "config.json").is_file():
        make_tiny_llama(out, seed=0)
    return out


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as safetensors, converted once into the model cache."""
    return prepare_smollm2(default_model_cache())


def wait_ready(base_url: str, *, timeout_s: float = 120.0, proc: Any = None) -> None:
    """Poll ``<root>/health`` until it answers 200, the process dies, or time runs out."""
    health = base_url.removesuffix("/v1") + "/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(health, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {base_url} not ready after {timeout_s} s")


@contextlib.contextmanager
def serve_model(
    model_dir: Path, *, extra_args: Sequence[str] = (), timeout_s: float = 120.0
) -> Iterator[str]:
    """Run the toolkit's server on ``model_dir`` in a subprocess; yield its ``/v1`` URL."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "qdanalysis.runner.llm.server",
        "--model",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        try:
            wait_ready(base_url, timeout_s=timeout_s, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"{exc}; server stderr:\n{err[-3000:]}") from exc
        yield base_url
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.contextmanager
def serve_app(app: Any, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Run an ASGI ``app`` with uvicorn in a daemon thread on loopback; yield its ``/v1`` URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(base_url, timeout_s=timeout_s)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class FakeBackend:
    """A scripted backend: echoes ``<model>|<last message>|<sample_index>|<seed>``.

    Parameters
    ----------
    errors
        ProviderErrors raised by the first calls, in order (``None`` entries succeed).
    delay_s
        Seconds each call sleeps (asyncio), to overlap calls.
    supports_n
        Whether it offers ``complete_n`` (``supports_n`` attribute).
    """

    def __init__(
        self,
        *,
        errors: Sequence[ProviderError | None] = (),
        delay_s: float = 0.0,
        supports_n: bool = False,
        endpoint: str = "fake://backend",
    ) -> None:
        self.endpoint = endpoint
        self.errors = list(errors)
        self.delay_s = delay_s
        self.supports_n = supports_n
        self.calls: list[tuple[ChatRequest, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def _text(self, request: ChatRequest, k: int) -> str:
        last = request.messages[-1]["content"] if request.messages else ""
        return f"{request.model}|{last}|{request.sample_index + k}|{request.seed}"

    async def _run(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        self.calls.append((request, n))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.errors:
                err = self.errors.pop(0)
                if err is not None:
                    raise err
            return [
                ChatResponse(
                    text=self._text(request, k),
                    model=request.model,
                    finish_reason="stop",
                    prompt_tokens=7,
                    completion_tokens=3,
                    latency_s=self.delay_s,
                )
                for k in range(n)
            ]
        finally:
            self.in_flight -= 1

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return (await self._run(request, 1))[0]

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        if not self.supports_n:
            raise AttributeError("complete_n")
        return await self._run(request, n)
