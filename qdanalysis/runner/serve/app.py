"""The OpenAI-compatible HTTP face of served ensembles: routes, limits, streaming, errors.

Routes: ``GET /health``; ``GET /v1/models`` (one entry per :class:`~.ensemble.Ensemble`, with
its configuration under ``x_moa``); ``POST /v1/chat/completions`` (``model`` picks the
ensemble; ``messages``, ``temperature``, ``max_tokens`` / ``max_completion_tokens``, ``stop``,
``seed``, ``n``, ``stream``, ``stream_options.include_usage`` are read, other fields ignored).

The response is a ``chat.completion`` whose ``usage`` counts every token the request paid for
(references, intermediate layers or steps, the final calls; cache hits excluded) and whose
``x_moa`` extension lists each reference and each later call (model, tokens, latency, status,
cached). With ``stream: true`` the references run first, then the final calls' tokens arrive
as ``chat.completion.chunk`` server-sent events (several choices interleave, by ``index``),
then one chunk per choice with its ``finish_reason``, then (with ``include_usage``) a chunk
with ``usage`` and ``x_moa``, then ``data: [DONE]``. The HTTP status is decided before the
first byte: a request whose references fail gets its error JSON and status, not a stream.

Limits (:class:`ServeLimits`): ``max_active`` requests run at once and ``max_queued`` more wait
(past both: 429 with ``Retry-After``; waiting longer than ``queue_timeout_s``: 503); bodies past
``max_request_bytes`` get 413; ``n`` past ``max_n`` 400; with ``api_key_env`` set, every
``/v1`` route needs ``Authorization: Bearer <key>`` (401 otherwise; the key is never logged).
Upstream calls are capped per endpoint by the managed client passed in.

Every error is ``{"error": {"message", "type", "code"}}``: 400 invalid request, 401 bad key,
404 unknown model, 413 too large, 429 queue full, 502 upstream errors, 503 upstream rate
limits or no slot, 504 upstream timeouts (see :class:`~.ensemble.EnsembleError`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..._optional import require
from ...errors import ConfigError
from ..llm.base import ChatClient
from ..store import RunStore
from .ensemble import ChatParams, Ensemble, EnsembleError, Served, run_ensemble

try:  # FastAPI reads the handlers' annotations by name: Request must be a module global
    from starlette.requests import Request
except ImportError:  # pragma: no cover - build_app raises the install hint
    Request = Any  # type: ignore[misc,assignment]

__all__ = ["ServeLimits", "build_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ServeLimits:
    """How much a server takes on, how long it waits, and who may call it.

    Examples
    --------
    >>> ServeLimits(max_active=4).max_queued
    256
    """

    max_active: int = 32
    """Requests answered at once (each makes several upstream calls, capped by the client)."""
    max_queued: int = 256
    """Requests waiting for a slot; one more is refused with 429 and ``Retry-After``."""
    queue_timeout_s: float = 60.0
    """Most seconds a request waits for a slot before a 503."""
    retry_after_s: float = 1.0
    """``Retry-After`` of a 429 or 503 refusal."""
    max_request_bytes: int = 1_048_576
    """Largest request body accepted (413 past it)."""
    max_n: int = 8
    """Largest ``n`` accepted."""
    proposer_timeout_s: float | None = 120.0
    """Most seconds one reference call may take, retries included (None: the client's)."""
    aggregator_timeout_s: float | None = 300.0
    """Most seconds one later call (layer, step, aggregator, single) may take."""
    api_key_env: str | None = None
    """NAME of the environment variable holding the bearer key clients must send (None: open)."""

    def __post_init__(self) -> None:
        checks = (
            ("max_active", self.max_active >= 1, ">= 1"),
            ("max_queued", self.max_queued >= 0, ">= 0"),
            ("queue_timeout_s", self.queue_timeout_s > 0, "> 0"),
            ("retry_after_s", self.retry_after_s >= 0, ">= 0"),
            ("max_request_bytes", self.max_request_bytes >= 1, ">= 1"),
            ("max_n", self.max_n >= 1, ">= 1"),
            ("proposer_timeout_s", (self.proposer_timeout_s or 1) > 0, "None or > 0"),
            ("aggregator_timeout_s", (self.aggregator_timeout_s or 1) > 0, "None or > 0"),
        )
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(
                    f"ServeLimits.{name}: expected {what}; got {getattr(self, name)!r}."
                )

    def api_key(self) -> str | None:
        """The bearer key from :attr:`api_key_env` (None when no variable is named).

        Raises
        ------
        ConfigError
            If the variable is named but unset or empty (a server meant to be closed never
            starts open).
        """
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"ServeLimits.api_key_env: expected the environment variable "
                f"{self.api_key_env!r} to hold the key clients must send; got it unset or empty. "
                "Export it, or pass api_key_env=None for an open server."
            )
        return key


def _error(exc: EnsembleError, headers: Mapping[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    extra = dict(headers or {})
    if exc.retry_after is not None:
        extra.setdefault("Retry-After", f"{max(1, round(exc.retry_after))}")
    return JSONResponse(exc.body(), status_code=exc.status, headers=extra or None)


def _internal(exc: BaseException) -> EnsembleError:
    return EnsembleError(
        f"internal error: {type(exc).__name__}: {str(exc)[:300]}",
        status=500,
        type="server_error",
        code="internal_error",
    )


def _bad(message: str, code: str = "invalid_request", status: int = 400) -> EnsembleError:
    return EnsembleError(message, status=status, type="invalid_request_error", code=code)


def _content(i: int, content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise _bad(
        f"messages[{i}].content: expected a string or a list of text parts; got "
        f"{type(content).__name__}. Only text is served."
    )


def _messages(raw: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad(f"messages: expected a non-empty list; got {type(raw).__name__}.")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _bad(f"messages[{i}]: expected {{'role': str, 'content': str}}; got {m!r:.200}.")
        out.append({"role": m["role"], "content": _content(i, m.get("content"))})
    return tuple(out)


def _number(body: Mapping[str, Any], name: str, kind: type, low: float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise _bad(f"{name}: expected a{'n int' if kind is int else ' number'}; got {value!r}.")
    if value < low:
        raise _bad(f"{name}: expected >= {low}; got {value!r}.")
    return kind(value)


def _params(body: Mapping[str, Any], max_n: int) -> ChatParams:
    """The :class:`ChatParams` of a request body (an :class:`EnsembleError` 400 when bad)."""
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)
    ):
        raise _bad(f"stop: expected a string or a list of non-empty strings; got {stop!r}.")
    n = _number(body, "n", int, 1) or 1
    if n > max_n:
        raise _bad(f"n: expected at most {max_n} on this server; got {n}.", code="invalid_n")
    max_tokens = _number(body, "max_completion_tokens", int, 1)
    return ChatParams(
        messages=_messages(body.get("messages")),
        temperature=_number(body, "temperature", float, 0),
        max_tokens=max_tokens or _number(body, "max_tokens", int, 1),
        stop=None if stop is None else tuple(stop),
        seed=_number(body, "seed", int, -(2**63)),
        n=n,
    )


def _x_moa(ensemble: Ensemble, served: Served) -> dict[str, Any]:
    """The ``x_moa`` extension: what the ensemble ran and what each call cost."""
    return {
        "ensemble": ensemble.name,
        "method": ensemble.method,
        "config_id": ensemble.spec.config_id,
        "seed": served.seed,
        "n_references": sum(r["status"] == "ok" for r in served.references),
        "min_references": ensemble.needed,
        "references": list(served.references),
        "calls": list(served.calls),
        "usage": {"references": served.usage("references"), "calls": served.usage("calls")},
    }


class _Gate:
    """Admission: ``max_active`` requests run, ``max_queued`` wait, the rest are refused."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.pending = 0
        self._sem: asyncio.Semaphore | None = None

    def refusal(self) -> EnsembleError | None:
        """None, counting the request in, or the 429 refusal when the queue is full."""
        lim = self.limits
        if self.pending >= lim.max_active + lim.max_queued:
            return EnsembleError(
                f"server busy: {lim.max_active} requests running and {lim.max_queued} queued "
                f"(the most it takes); got one more. Retry after {lim.retry_after_s:g} s.",
                status=429,
                type="rate_limit_error",
                code="queue_full",
                retry_after=lim.retry_after_s,
            )
        self.pending += 1
        return None

    async def enter(self) -> None:
        """Wait for a slot (a 503 past ``queue_timeout_s``); :meth:`leave` after."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.limits.max_active)
        try:
            await asyncio.wait_for(self._sem.acquire(), self.limits.queue_timeout_s)
        except TimeoutError:
            self.pending -= 1
            raise EnsembleError(
                f"server busy: expected a free slot within {self.limits.queue_timeout_s:g} s; "
                "got none. Retry later.",
                status=503,
                type="server_error",
                code="queue_timeout",
                retry_after=self.limits.retry_after_s,
            ) from None

    def leave(self) -> None:
        if self._sem is not None:
            self._sem.release()
        self.pending -= 1


def _chunk(base: Mapping[str, Any], choices: list[dict[str, Any]], **extra: Any) -> str:
    body = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
    return f"data: {json.dumps(body)}\n\n"


class _Server:
    """The app's state: ensembles by name, the upstream client, limits, admission, key."""

    def __init__(
        self,
        ensembles: Sequence[Ensemble],
        client: ChatClient,
        limits: ServeLimits,
        store: RunStore | None = None,
    ) -> None:
        names = [e.name for e in ensembles]
        if not names or len(set(names)) != len(names):
            raise ConfigError(
                f"build_app ensembles: expected at least one, with distinct names; got {names}."
            )
        self.ensembles = {e.name: e for e in ensembles}
        self.client = client
        self.limits = limits
        self.key = limits.api_key()
        self.gate = _Gate(limits)
        self.store = store
        self.created = int(time.time())

    def record(self, request_id: str, served: Served) -> None:
        """Append a served request's rows to the store, if there is one."""
        if self.store is not None:
            self.store.append(served.recorded(request_id))

    def check_key(self, authorization: str | None) -> EnsembleError | None:
        """None when the request may pass, else the 401 (the key is compared, never shown)."""
        if self.key is None:
            return None
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.key.encode()
        ):
            return None
        return EnsembleError(
            "expected the header 'Authorization: Bearer <key>' with this server's key; got "
            f"{'a wrong key' if given else 'none'}.",
            status=401,
            type="invalid_request_error",
            code="invalid_api_key",
        )

    def models(self) -> dict[str, Any]:
        data = [
            {
                "id": e.name,
                "object": "model",
                "created": self.created,
                "owned_by": "qdanalysis",
                "x_moa": e.describe(),
            }
            for e in self.ensembles.values()
        ]
        return {"object": "list", "data": data}

    async def read(self, request: Any) -> tuple[Ensemble, ChatParams, dict[str, Any]]:
        """The body, bounded by ``max_request_bytes``, parsed (EnsembleError when refused)."""
        limit = self.limits.max_request_bytes
        too_big = _bad(
            f"request body: expected at most {limit} bytes; got more. Send a shorter chat.",
            code="request_too_large",
            status=413,
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > limit:
                raise too_big
        try:
            body = json.loads(bytes(data))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(f"request body: expected JSON; got {exc}.") from None
        if not isinstance(body, dict):
            raise _bad(f"request body: expected a JSON object; got {type(body).__name__}.")
        name = body.get("model")
        if name not in self.ensembles:
            raise _bad(
                f"model: expected one of {sorted(self.ensembles)}; got {name!r}. GET "
                "/v1/models lists them.",
                code="model_not_found",
                status=404,
            )
        try:
            params = _params(body, self.limits.max_n)
        except ConfigError as exc:
            raise _bad(str(exc)) from None
        return self.ensembles[name], params, body

    def run(self, ensemble: Ensemble, params: ChatParams, on_delta: Any = None) -> Any:
        return run_ensemble(
            ensemble,
            self.client,
            params,
            proposer_timeout_s=self.limits.proposer_timeout_s,
            aggregator_timeout_s=self.limits.aggregator_timeout_s,
            on_delta=on_delta,
        )

    def completion(self, ensemble: Ensemble, served: Served) -> dict[str, Any]:
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.record(request_id, served)
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ensemble.name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": served.finish_reasons[i],
                }
                for i, text in enumerate(served.texts)
            ],
            "usage": served.usage(),
            "x_moa": _x_moa(ensemble, served),
        }

    async def stream(
        self, ensemble: Ensemble, params: ChatParams, include_usage: bool
    ) -> tuple[Any, AsyncIterator[str] | None]:
        """Run with streaming; (error response, None) when it fails before any text."""
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.run(ensemble, params, lambda i, t: queue.put_nowait((i, t)))
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        first = await queue.get()
        if first is None and task.exception() is not None:
            exc = task.exception()
            err = exc if isinstance(exc, EnsembleError) else _internal(exc)
            return _error(err), None
        return None, self._events(ensemble, params, include_usage, task, queue, first)

    async def _events(
        self,
        ensemble: Ensemble,
        params: ChatParams,
        include_usage: bool,
        task: asyncio.Future[Served],
        queue: asyncio.Queue[tuple[int, str] | None],
        item: tuple[int, str] | None,
    ) -> AsyncIterator[str]:
        base: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}"}
        base["created"] = int(time.time())
        base["model"] = ensemble.name
        try:
            role = {"role": "assistant", "content": ""}
            yield _chunk(
                base, [{"index": i, "delta": role, "finish_reason": None} for i in range(params.n)]
            )
            while item is not None:
                delta = {"index": item[0], "delta": {"content": item[1]}, "finish_reason": None}
                yield _chunk(base, [delta])
                item = await queue.get()
            exc = task.exception()
            if exc is not None:
                err = exc if isinstance(exc, EnsembleError) else _internal(exc)
                yield f"data: {json.dumps(err.body())}\n\n"
                return
            served = task.result()
            self.record(base["id"], served)
            ends: list[dict[str, Any]] = [
                {"index": i, "delta": {}, "finish_reason": served.finish_reasons[i]}
                for i in range(params.n)
            ]
            x_moa = _x_moa(ensemble, served)
            if include_usage:
                yield _chunk(base, ends)
                yield _chunk(base, [], usage=served.usage(), x_moa=x_moa)
            else:
                yield _chunk(base, ends, x_moa=x_moa)
            yield "data: [DONE]\n\n"
        finally:
            if not task.done():
                task.cancel()
            self.gate.leave()


async def _answer(server: _Server, request: Any) -> Any:
    """``POST /v1/chat/completions``: admission, then a completion or a stream."""
    from fastapi.responses import JSONResponse, StreamingResponse

    denied = server.check_key(request.headers.get("authorization"))
    if denied is not None:
        return _error(denied, {"WWW-Authenticate": "Bearer"})
    try:
        ensemble, params, body = await server.read(request)
    except EnsembleError as exc:
        return _error(exc)
    refused = server.gate.refusal()
    if refused is not None:
        return _error(refused)
    start, handed_off = time.perf_counter(), False
    try:
        await server.gate.enter()
    except EnsembleError as exc:
        return _error(exc)
    try:
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            failed, events = await server.stream(ensemble, params, usage)
            if events is None:
                return failed
            handed_off = True
            return StreamingResponse(events, media_type="text/event-stream")
        served = await server.run(ensemble, params)
        return JSONResponse(server.completion(ensemble, served))
    except EnsembleError as exc:
        log.info("%s: %d %s", ensemble.name, exc.status, exc.code)
        return _error(exc)
    except Exception as exc:  # a bug: still an OpenAI error body, and the traceback logged
        log.exception("%s: internal error", ensemble.name)
        return _error(_internal(exc))
    finally:
        if not handed_off:
            server.gate.leave()
        log.debug("%s n=%d: %.3f s", ensemble.name, params.n, time.perf_counter() - start)


def build_app(
    ensembles: Sequence[Ensemble],
    client: ChatClient,
    limits: ServeLimits | None = None,
    *,
    store: RunStore | None = None,
) -> Any:
    """The FastAPI app serving ``ensembles`` over ``client`` (see the module docstring).

    Parameters
    ----------
    ensembles
        The served models (distinct names).
    client
        Upstream client; wrap backends in
        :class:`~qdanalysis.runner.llm.managed.ManagedClient` for the concurrency cap, retries,
        timeouts, cache and ledger.
    limits
        Admission, size, time and key limits (:class:`ServeLimits` defaults when None).
    store
        Where each answered request's rows go (references, intermediate and aggregator rows,
        :func:`qdanalysis.schema.output_row` rows; ``question_id`` = the response ``id``), so
        ``RunStore.write_outputs`` gives an outputs table that ``fit`` reads. None: not kept.

    Returns
    -------
    fastapi.FastAPI
        Run it with uvicorn.

    Raises
    ------
    ConfigError
        If names repeat, or ``limits.api_key_env`` names an unset variable.
    """
    fastapi = require("fastapi", extra="llm", purpose="serving ensembles")
    server = _Server(ensembles, client, limits or ServeLimits(), store)
    app = fastapi.FastAPI(title="qdanalysis MoA server")
    app.state.server = server

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "pending": server.gate.pending}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        denied = server.check_key(request.headers.get("authorization"))
        return server.models() if denied is None else _error(denied)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await _answer(server, request)

    return app
