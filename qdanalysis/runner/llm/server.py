"""The toolkit's own OpenAI-compatible server over a local transformers model.

``python -m qdanalysis.runner.llm.server --model DIR --port P --host 127.0.0.1`` serves
``/v1/models`` and ``/v1/chat/completions`` (temperature, top_p, max_tokens, n, seed, stop) from
one :class:`~qdanalysis.runner.llm.hf_local.HFLocalClient`, one request at a time. Tests and small
offline runs use it as a loopback endpoint for
:class:`~qdanalysis.runner.llm.openai_compat.OpenAICompatClient`.

A backend's :class:`~qdanalysis.errors.ProviderError` becomes the HTTP error a hosted API would
send: ``fatal`` 400, ``rate_limit`` 429 (with ``Retry-After`` when the error has one),
``transient`` 500. Fault injection for tests wraps the backend
(:class:`qdanalysis.testing.faults.FaultyBackend`); the server itself has none.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..._optional import require
from ...errors import ProviderError
from .base import ChatRequest, ChatResponse

__all__ = ["create_app", "main"]

logger = logging.getLogger(__name__)


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


def _provider_error(exc: ProviderError, error: Any) -> Any:
    """The HTTP error response of a backend's :class:`ProviderError` (its own status if set)."""
    headers = {} if exc.retry_after is None else {"Retry-After": f"{exc.retry_after:g}"}
    if exc.kind == "fatal":
        return error(exc.status or 400, str(exc), "invalid_request_error", **headers)
    if exc.kind == "rate_limit":
        return error(exc.status or 429, str(exc), "rate_limit_error", **headers)
    return error(exc.status or 500, str(exc), "server_error", **headers)


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


def create_app(client: Any, *, model_name: str) -> Any:
    """Build the FastAPI app serving ``client`` (an ``HFLocalClient``) as ``model_name``.

    Parameters
    ----------
    client
        A backend with ``complete_n(request, n)``.
    model_name
        The model id listed by ``/v1/models`` and accepted by ``/v1/chat/completions``.

    Returns
    -------
    fastapi.FastAPI
        The app; run it with uvicorn.
    """
    fastapi = require("fastapi", extra="llm", purpose="the local OpenAI-compatible server")
    responses = require("fastapi.responses", extra="llm", purpose="the local server")
    JSONResponse = responses.JSONResponse
    app = fastapi.FastAPI(title="qdanalysis local LLM server")
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
            outs = await client.complete_n(request, n)
        except ProviderError as exc:
            return _provider_error(exc, error)
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
    app = create_app(client, model_name=client.model_name)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
