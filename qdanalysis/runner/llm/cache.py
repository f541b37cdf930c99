"""A sample-aware response cache in one sqlite3 file (WAL mode, one commit per put).

The key is :func:`~qdanalysis.runner.llm.base.request_key`: the content hash of the endpoint and
:meth:`ChatRequest.key_fields` (model, messages, temperature, top_p, max_tokens, stop, seed and
``sample_index``), so N samples of one prompt at T > 0 stay N entries. Timeouts, concurrency
limits and API keys are never part of a key or a value; errors are never cached.

Neighbours: :class:`qdanalysis.runner.llm.managed.ManagedClient` reads and writes it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..._hashing import canonical_json
from ...errors import ConfigError
from .base import ChatRequest, ChatResponse, request_key

__all__ = ["ResponseCache"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""

_RESPONSE_FIELDS = (
    "text",
    "model",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
)


class ResponseCache:
    """Persistent cache of chat responses keyed by endpoint and request.

    Parameters
    ----------
    path
        The sqlite file (its folder is created). Several processes may share it.

    Notes
    -----
    One connection per cache object, guarded by a lock, so the object is safe to share between
    threads and coroutines. Each :meth:`put` commits (``synchronous=FULL``), so a process killed
    mid-run loses at most the call in flight.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from qdanalysis.runner.llm import ChatRequest, ChatResponse
    >>> d = tempfile.mkdtemp()
    >>> cache = ResponseCache(pathlib.Path(d) / "llm.sqlite")
    >>> req = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},))
    >>> cache.get("local", req) is None
    True
    >>> cache.put("local", req, ChatResponse(text="hello", model="m"))
    >>> hit = cache.get("local", req)
    >>> hit.text, hit.cached
    ('hello', True)
    >>> cache.close()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(
                f"ResponseCache: expected a file path; got the folder {str(self.path)!r}. "
                "Pass e.g. <folder>/llm-cache.sqlite."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    @staticmethod
    def key(endpoint: str, request: ChatRequest) -> str:
        """The cache key of ``request`` sent to ``endpoint`` (64 hex digits).

        Examples
        --------
        >>> from qdanalysis.runner.llm import ChatRequest
        >>> r = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},))
        >>> ResponseCache.key("e", r) == ResponseCache.key("e", r)
        True
        >>> import dataclasses
        >>> r1 = dataclasses.replace(r, sample_index=1)
        >>> ResponseCache.key("e", r) == ResponseCache.key("e", r1)
        False
        """
        return request_key(endpoint, request)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(
                f"ResponseCache({str(self.path)!r}): expected an open cache; got a closed one. "
                "Create a new ResponseCache."
            )
        return self._conn

    def get(self, endpoint: str, request: ChatRequest) -> ChatResponse | None:
        """The cached response (with ``cached=True``), or ``None`` on a miss."""
        key = self.key(endpoint, request)
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT response FROM responses WHERE key = ?", (key,))
                .fetchone()
            )
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row[0])
        return ChatResponse(
            text=str(data["text"]),
            model=str(data["model"]),
            finish_reason=data.get("finish_reason"),
            prompt_tokens=data.get("prompt_tokens"),
            completion_tokens=data.get("completion_tokens"),
            latency_s=data.get("latency_s"),
            extra=data.get("extra") or {},
            cached=True,
        )

    def put(self, endpoint: str, request: ChatRequest, response: ChatResponse) -> None:
        """Store ``response`` for ``request`` (replacing an older entry) and commit."""
        if not isinstance(response, ChatResponse):
            raise ConfigError(
                f"ResponseCache.put: expected a ChatResponse; got {type(response).__name__}. "
                "Errors are never cached."
            )
        value = {f: getattr(response, f) for f in _RESPONSE_FIELDS}
        value["extra"] = json.loads(json.dumps(dict(response.extra), default=str))
        row = (
            self.key(endpoint, request),
            endpoint,
            request.model,
            request.sample_index,
            canonical_json(request.key_fields()),
            json.dumps(value, ensure_ascii=False),
            time.time(),
        )
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row
            )

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
