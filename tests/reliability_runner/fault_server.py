"""A fault-injecting OpenAI-compatible chat server on loopback, for the runner reliability tests.

Plain :mod:`asyncio` streams (no web framework), so connection-level faults are exact: a dropped
connection, a body cut short of its ``Content-Length``, a 200 whose JSON is malformed, a response
that arrives after the client's timeout, and HTTP 429 (with ``Retry-After``), 500 and 503. It runs
in a daemon thread with its own event loop on ``127.0.0.1`` and a free port; use it as a context
manager so it always stops.

Responses are deterministic: choice ``i`` of a request is a pure function of its *sample key*
(model, messages, temperature, top_p, max_tokens, ``seed + i``), and its text carries the key as
``[sk:<16 hex>]``, so a test can map stored rows back to the requests that made them whether the
runner drew samples one by one or with ``n``. Every arrival is recorded (time, body key, sample
keys, attempt number of that body, fault served, whether the bearer token matched), and the
server tracks how many requests are in flight at once.

A *plan* decides the fault of each arrival: ``plan(arrival) -> kind | None``. Kinds are
:data:`FAULT_KINDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Fault kinds the server can serve instead of a normal answer.
FAULT_KINDS = (
    "429",  # rate limited, with Retry-After
    "500",  # internal error
    "503",  # unavailable, with Retry-After
    "malformed",  # 200 whose body is not valid JSON
    "truncated",  # 200 whose body stops short of its Content-Length, then the socket closes
    "slow",  # a normal answer after `slow_s` seconds (past the client's timeout)
    "drop",  # the connection closes without any response
    "400_echo",  # 400 whose message echoes the request's Authorization header (a leaky server)
)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def sample_key(body: dict[str, Any], choice: int) -> str:
    """The identity of choice ``choice`` of a chat request body (16 hex digits)."""
    seed = body.get("seed")
    return _hash(
        {
            "model": body.get("model"),
            "messages": body.get("messages"),
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "max_tokens": body.get("max_tokens"),
            "seed": None if seed is None else seed + choice,
        }
    )[:16]


def answer_text(key: str) -> str:
    """The deterministic answer of a sample key (a digit answer, so grading varies)."""
    return f"Worked it out [sk:{key}]. The answer is {int(key, 16) % 4}."


@dataclass
class Arrival:
    """One request as the server saw it."""

    index: int
    """0-based arrival number over the server's life."""
    t: float
    """``time.monotonic()`` at arrival (request fully read)."""
    path: str
    model: str | None
    """The requested model."""
    body_key: str
    """Hash of the whole request body."""
    sample_keys: list[str]
    """Sample key of each choice the request asks for."""
    attempt: int
    """How many earlier arrivals had the same body (0: first)."""
    auth_ok: bool
    """Whether the bearer token equals the server's expected key (True when none expected)."""
    fault: str | None = None
    """Fault served (None: a normal answer)."""
    completed: bool = False
    """A full 200 answer was written and drained."""


Plan = Callable[[Arrival], "str | None"]


@dataclass
class FaultServer:
    """The server; see the module docstring.

    Parameters
    ----------
    plan
        Fault of each arrival (default: none).
    latency_s
        Delay of every answer (a callable of the arrival, or a number).
    retry_after_s
        ``Retry-After`` sent with 429 and 503.
    slow_s
        Delay of ``slow`` answers.
    expected_key
        Bearer token the client must send (``None``: anything).
    """

    plan: Plan | None = None
    latency_s: float | Callable[[Arrival], float] = 0.0
    retry_after_s: float = 0.2
    slow_s: float = 3.0
    expected_key: str | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    n_probes: int = 0
    """``GET /models`` requests answered (endpoint checks; never faulted, not arrivals)."""
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    # lifecycle ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", 0, backlog=2048
                )
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(boot())
            loop.run_forever()
            # shutting down: close connections, cancel handlers, close the loop
            for w in list(self._writers):
                w.close()
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or self._thread is None:
            return

        def shutdown() -> None:
            server.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # accounting --------------------------------------------------------------------------------
    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def fault_counts(self) -> Counter[str]:
        return Counter(a.fault for a in self.snapshot() if a.fault is not None)

    # HTTP --------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(length) if length else b""
                if method == "GET" and path.rstrip("/").endswith("/health"):
                    await self._send(writer, 200, {"status": "ok"})
                    continue
                if method == "GET" and path.rstrip("/").endswith("/models"):  # the CLI's probe
                    self.n_probes += 1
                    await self._send(writer, 200, {"object": "list", "data": []})
                    continue
                keep = await self._chat(writer, path, headers, raw)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # a client hung up, or the server is stopping
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        *,
        extra: dict[str, str] | None = None,
        raw: bytes | None = None,
        cut: int | None = None,
    ) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        reason = {
            200: "OK",
            400: "Bad Request",
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(status, "X")
        hdrs = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            **(extra or {}),
        }
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
            + "\r\n"
        )
        writer.write(head.encode("latin-1") + (body if cut is None else body[:cut]))
        await writer.drain()

    async def _chat(
        self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str], raw: bytes
    ) -> bool:
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            await self._send(writer, 400, {"error": {"message": "bad json"}})
            return True
        n = int(body.get("n") or 1)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            body_key = _hash(body)
            attempt = sum(1 for a in self.arrivals if a.body_key == body_key)
            arrival = Arrival(
                index=len(self.arrivals),
                t=time.monotonic(),
                path=path,
                model=body.get("model"),
                body_key=body_key,
                sample_keys=[sample_key(body, i) for i in range(n)],
                attempt=attempt,
                auth_ok=self.expected_key is None or token == self.expected_key,
            )
            arrival.fault = self.plan(arrival) if self.plan is not None else None
            self.arrivals.append(arrival)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(writer, arrival, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(
        self, writer: asyncio.StreamWriter, a: Arrival, headers: dict[str, str], body: Any
    ) -> bool:
        latency = self.latency_s(a) if callable(self.latency_s) else self.latency_s
        if latency:
            await asyncio.sleep(latency)
        fault = a.fault
        ra = {"retry-after": f"{self.retry_after_s:g}"}
        if fault == "429":
            await self._send(writer, 429, {"error": {"message": "slow down"}}, extra=ra)
            return True
        if fault in ("500", "503"):
            await self._send(
                writer,
                int(fault),
                {"error": {"message": "oops"}},
                extra=ra if fault == "503" else None,
            )
            return True
        if fault == "400_echo":
            msg = f"bad request from {headers.get('authorization', '')}"
            await self._send(writer, 400, {"error": {"message": msg}})
            return True
        if fault == "drop":
            return False
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if not a.auth_ok:
            await self._send(writer, 401, {"error": {"message": "invalid api key"}})
            return True
        payload = {
            "id": f"chatcmpl-{a.index}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": answer_text(k)},
                    "finish_reason": "stop",
                }
                for i, k in enumerate(a.sample_keys)
            ],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 7 * len(a.sample_keys),
                "total_tokens": 11 + 7 * len(a.sample_keys),
            },
        }
        if fault == "malformed":
            await self._send(writer, 200, None, raw=json.dumps(payload).encode()[:-7] + b"}{,")
            return True
        if fault == "truncated":
            await self._send(writer, 200, payload, cut=40)
            return False
        await self._send(writer, 200, payload)
        a.completed = True
        return True


@contextlib.contextmanager
def fault_server(**kwargs: Any) -> Iterator[FaultServer]:
    """Start a :class:`FaultServer` on loopback; stop it on exit."""
    srv = FaultServer(**kwargs).start()
    try:
        yield srv
    finally:
        srv.stop()


def first_attempts(*kinds: str) -> Plan:
    """A plan serving ``kinds[i]`` to attempt ``i`` of every request body, then answers."""

    def plan(a: Arrival) -> str | None:
        return kinds[a.attempt] if a.attempt < len(kinds) else None

    return plan
