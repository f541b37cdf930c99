"""The toolkit's own OpenAI-compatible server over a local transformers model.

``python -m qdanalysis.runner.llm.server --model DIR --port P --host 127.0.0.1`` serves
``/v1/models``
and ``/v1/chat/completions`` (temperature, top_p, max_tokens, n, seed, stop) from one
:class:`~qdanalysis.runner.llm.hf_local.HFLocalClient`, one request at a time. Tests and small
offline
runs use it as a loopback endpoint for
:class:`~qdanalysis.runner.llm.openai_compat.OpenAICompatClient`.

Fault injection for tests: ``--fault-status 429 --fault-count 2 --fault-retry-after 0.5`` answers
the first two chat calls with HTTP 429 and ``Retry-After: 0.5``; ``--ignore-n`` returns one
choice whatever ``n`` asks, like servers that ignore it.
"""

from __future__ import annotations

import argparse
import logging
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..._optional import require
from ...errors import ProviderError
from .base import ChatRequest, ChatResponse

__all__ = ["FaultSpec", "create_app", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """Faults the server injects, for tests of clients' error handling."""

    status: int | None = None
    """HTTP status of injected failures (e.g. 429, 500); ``None`` injects none."""
    count: int = 0
    """How many chat calls, the first ones, fail."""
    retry_after: float | None = None
    """``Retry-After`` header value in seconds sent with the failures."""
    ignore_n: bool = False
    """Return one choice whatever ``n`` asks."""


def _request(body: dict[str, Any], model_name: str) -> ChatRequest:
    """The :class:`ChatRequest` of a chat-completions body (ValueError/TypeError when bad)."""
    stop = body.get("stop") or ()
    seed = body.get("seed")
    if seed is None:  # like hosted APIs: no seed, fresh randomness
        seed = random.SystemRandom().randrange(2**31)
    request = ChatRequest(
        model=model_name,
        messages=tuple(
            {"role": str(m.get("role")), "content": str(m.get("content"))}
            for m in body.get("messages") or ()
        ),
        temperature=float(body.get("temperature", 1.0)),
        top_p=float(body.get("top_p", 1.0)),
        max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
        seed=int(seed),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
    )
    if not request.messages:
        raise ValueError("messages: expected at least one message; got none")
    return request


def _completion(model_name: str, outs: Sequence[ChatResponse]) -> dict[str, Any]:
    """The chat-completions response body of ``outs``."""
    completion = sum(r.completion_tokens or 0 for r in outs)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": r.text},
                "finish_reason": r.finish_reason,
                "completion_tokens": r.completion_tokens,
            }
            for i, r in enumerate(outs)
        ],
        "usage": {
            "prompt_tokens": outs[0].prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": (outs[0].prompt_tokens or 0) + completion,
        },
    }


def create_app(client: Any, *, model_name: str, faults: FaultSpec | None = None) -> Any:
    """Build the FastAPI app serving ``client`` (an ``HFLocalClient``) as ``model_name``.

    Parameters
    ----------
    client
        A backend with ``complete_n(request, n)``.
    model_name
        The model id listed by ``/v1/models`` and accepted by ``/v1/chat/completions``.
    faults
        Faults to inject (none by default).

    Returns
    -------
    fastapi.FastAPI
        The app; run it with uvicorn.
    """
    fastapi = require("fastapi", extra="llm", purpose="the local OpenAI-compatible server")
    responses = require("fastapi.responses", extra="llm", purpose="the local server")
    JSONResponse = responses.JSONResponse
    faults = faults or FaultSpec()
    app = fastapi.FastAPI(title="qdanalysis local LLM server")
    state = {"calls": 0}
    lock = threading.Lock()
    created = int(time.time())

    def error(status: int, message: str, kind: str, **headers: str) -> Any:
        body = {"error": {"message": message, "type": kind, "code": status}}
        return JSONResponse(body, status_code=status, headers=headers or None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": model_name, "object": "model", "created": created, "owned_by": "local"}
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> Any:
        with lock:
            state["calls"] += 1
            call = state["calls"]
        if faults.status is not None and call <= faults.count:
            headers = {}
            if faults.retry_after is not None:
                headers["Retry-After"] = str(faults.retry_after)
            return error(
                faults.status, f"injected fault {call}/{faults.count}", "injected", **headers
            )
        if body.get("model") != model_name:
            return error(
                404,
                f"model {body.get('model')!r} not found; this server has {model_name!r}",
                "not_found_error",
            )
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1 or n > 128:
            return error(
                400, f"n: expected an integer in [1, 128]; got {n!r}", "invalid_request_error"
            )
        try:
            request = _request(body, model_name)
        except (ValueError, TypeError) as exc:
            return error(400, str(exc), "invalid_request_error")
        try:
            outs = await client.complete_n(request, 1 if faults.ignore_n else n)
        except ProviderError as exc:
            if exc.kind == "fatal":
                return error(400, str(exc), "invalid_request_error")
            return error(500, str(exc), "server_error")
        return _completion(model_name, outs)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a local model: ``python -m qdanalysis.runner.llm.server --model DIR --port P``."""
    parser = argparse.ArgumentParser(
        prog="python -m qdanalysis.runner.llm.server", description=__doc__
    )
    parser.add_argument("--model", required=True, help="model folder (or locally cached hub id)")
    parser.add_argument("--gguf-file", default=None, help="GGUF file inside --model")
    parser.add_argument("--model-name", default=None, help="served model id (default: folder name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--fault-status", type=int, default=None)
    parser.add_argument("--fault-count", type=int, default=0)
    parser.add_argument("--fault-retry-after", type=float, default=None)
    parser.add_argument("--ignore-n", action="store_true")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    uvicorn = require("uvicorn", extra="llm", purpose="the local OpenAI-compatible server")
    from .hf_local import HFLocalClient

    client = HFLocalClient(
        args.model,
        device=args.device,
        dtype=args.dtype,
        gguf_file=args.gguf_file,
        model_name=args.model_name,
    )
    client.warm_up()
    faults = FaultSpec(
        status=args.fault_status,
        count=args.fault_count,
        retry_after=args.fault_retry_after,
        ignore_n=args.ignore_n,
    )
    app = create_app(client, model_name=client.model_name, faults=faults)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
