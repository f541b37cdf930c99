"""Per-model endpoints: one :class:`~qdanalysis.runner.llm.router.ModelRouter` from model specs.

Each model a run names gets an :class:`EndpointSpec`: its backend (``openai``-compatible HTTP
with its own ``base_url`` and API-key variable, ``vllm`` offline, ``hf`` local, or a backend a
caller registers, e.g. the test suite's mock), the model id the endpoint serves, its own cap on
calls in flight and its own request rate. :func:`build_router` turns a mapping of them into one
chat client; models that share a backend (the same URL and key variable, or the same weights)
share one client instance, and a model served under another id keeps that id in its endpoint,
so cache keys and the managed client's concurrency caps stay per endpoint and per model
(:meth:`ModelRouter.endpoint_for`).

Neighbours: ``python -m qdanalysis.run --endpoint NAME=URL`` and a study's ``[models]`` tables
build their specs here; :class:`~qdanalysis.runner.llm.managed.ManagedClient` wraps the router.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .base import ChatRequest, ChatResponse, ping, supports_n
from .router import ModelRouter

__all__ = ["BACKENDS", "EndpointSpec", "LimitedBackend", "build_router", "parse_endpoint"]

#: Built-in backend kinds (callers may register more, see :func:`build_router`).
BACKENDS = ("openai", "vllm", "hf")

BackendFactory = Callable[["EndpointSpec"], Any]


def _positive(name: str, value: Any, *, integer: bool) -> None:
    kind = int if integer else (int, float)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        what = "an int >= 1" if integer else "a number > 0"
        raise ConfigError(f"EndpointSpec.{name}: expected None or {what}; got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class EndpointSpec:
    """Where and how one model is called.

    Examples
    --------
    >>> EndpointSpec(backend="openai", base_url="http://127.0.0.1:8000/v1").share_key()
    ('openai', 'http://127.0.0.1:8000/v1', None, 600.0)
    """

    backend: str
    """``"openai"`` (OpenAI-compatible HTTP), ``"vllm"`` (offline engine), ``"hf"``
    (transformers), or a kind registered with :func:`build_router` (e.g. ``"mock"``)."""
    base_url: str | None = None
    """``openai``: the API root, e.g. ``http://127.0.0.1:8000/v1``."""
    api_key_env: str | None = None
    """``openai``: NAME of the environment variable holding the key (never the key); None for a
    server without keys."""
    path: str | None = None
    """``vllm``/``hf``: the model folder (a ``.gguf`` file is loaded from its folder)."""
    served_model: str | None = None
    """The model id the endpoint serves, when it differs from the run's model name."""
    concurrency: int | None = None
    """Most calls of this model in flight at once; None: only the managed client's cap."""
    requests_per_minute: float | None = None
    """Most request starts of this model per minute (evenly spaced); None: no limit."""
    timeout_s: float = 600.0
    """``openai``: HTTP timeout of one attempt in seconds."""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Extra keyword arguments of a registered backend kind (e.g. the mock's ``delay_s``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not self.backend:
            raise ConfigError(f"EndpointSpec.backend: expected a kind; got {self.backend!r}.")
        if self.backend == "openai" and not self.base_url:
            raise ConfigError(
                "EndpointSpec: backend 'openai' expected base_url http(s)://HOST/v1; got none."
            )
        if self.backend in ("vllm", "hf") and not self.path:
            raise ConfigError(
                f"EndpointSpec: backend {self.backend!r} expected path (a model folder); got none."
            )
        _positive("concurrency", self.concurrency, integer=True)
        _positive("requests_per_minute", self.requests_per_minute, integer=False)
        _positive("timeout_s", self.timeout_s, integer=False)
        object.__setattr__(self, "options", dict(self.options))

    def share_key(self) -> tuple[Any, ...]:
        """Specs with equal keys share one backend instance."""
        if self.backend == "openai":
            return (self.backend, self.base_url, self.api_key_env or None, self.timeout_s)
        if self.backend in ("vllm", "hf"):
            return (self.backend, self.path)
        return (self.backend, tuple(sorted((k, repr(v)) for k, v in self.options.items())))


class LimitedBackend:
    """A backend under its own served id, concurrency cap and request rate.

    Parameters
    ----------
    backend
        The backend it forwards to.
    served_model
        The model id sent instead of the request's (None: unchanged).
    concurrency
        Most calls in flight through this wrapper (None: no cap).
    requests_per_minute
        Most call starts per minute, spaced evenly (None: no limit).
    """

    def __init__(
        self,
        backend: Any,
        *,
        served_model: str | None = None,
        concurrency: int | None = None,
        requests_per_minute: float | None = None,
    ) -> None:
        self.backend = backend
        self.served_model = served_model
        self.concurrency = concurrency
        self.interval_s = 60.0 / requests_per_minute if requests_per_minute else 0.0
        base = str(backend.endpoint)
        # The served id is part of what is asked, so it is part of the endpoint (cache key).
        self.endpoint = f"{base}[{served_model}]" if served_model else base
        self.supports_n = supports_n(backend)
        self._sems: dict[int, asyncio.Semaphore] = {}
        self._next_start = 0.0

    def __repr__(self) -> str:
        return f"LimitedBackend({self.backend!r}, served_model={self.served_model!r})"

    def _semaphore(self) -> asyncio.Semaphore | None:
        if self.concurrency is None:
            return None
        loop = id(asyncio.get_running_loop())  # a semaphore belongs to one event loop
        sem = self._sems.get(loop)
        if sem is None:
            self._sems = {loop: asyncio.Semaphore(self.concurrency)}
            sem = self._sems[loop]
        return sem

    async def _pace(self) -> None:
        if not self.interval_s:
            return
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self.interval_s
        if start > now:
            await asyncio.sleep(start - now)

    def _served(self, request: ChatRequest) -> ChatRequest:
        if self.served_model is None:
            return request
        return dataclasses.replace(request, model=self.served_model)

    async def _run(self, fn: Callable[[], Any]) -> Any:
        sem = self._semaphore()
        if sem is None:
            await self._pace()
            return await fn()
        async with sem:
            await self._pace()
            return await fn()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Forward one request under the limits."""
        out: ChatResponse = await self._run(lambda: self.backend.complete(self._served(request)))
        return out

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Forward ``n`` samples of one request as one call under the limits."""
        out: list[ChatResponse] = await self._run(
            lambda: self.backend.complete_n(self._served(request), n)
        )
        return out

    async def ping(self) -> None:
        """Check the wrapped backend."""
        await ping(self.backend)

    async def aclose(self) -> None:
        """Close the wrapped backend if it can be closed."""
        close = getattr(self.backend, "aclose", None)
        if callable(close):
            await close()


def _openai(spec: EndpointSpec) -> Any:
    from .openai_compat import OpenAICompatClient

    replicas = spec.options.get("replicas")
    if replicas:  # more servers of the same model: spread the calls (see llm.replicas)
        from .replicas import ReplicaClient

        return ReplicaClient(
            [str(spec.base_url), *replicas],
            api_key_env=spec.api_key_env or None,
            timeout_s=spec.timeout_s,
        )
    return OpenAICompatClient(
        str(spec.base_url), api_key_env=spec.api_key_env or None, timeout_s=spec.timeout_s
    )


def _hf(spec: EndpointSpec) -> Any:
    from .hf_local import HFLocalClient

    path = Path(str(spec.path))
    if path.suffix == ".gguf":
        return HFLocalClient(path.parent, gguf_file=path.name)
    return HFLocalClient(path)


def _vllm(spec: EndpointSpec) -> Any:
    from .vllm_offline import VLLMOfflineClient

    return VLLMOfflineClient(str(spec.path))


_FACTORIES: Mapping[str, BackendFactory] = {"openai": _openai, "hf": _hf, "vllm": _vllm}


def build_router(
    specs: Mapping[str, EndpointSpec],
    *,
    factories: Mapping[str, BackendFactory] | None = None,
) -> ModelRouter:
    """One chat client routing each model name to the backend its spec describes.

    Parameters
    ----------
    specs
        Model name -> its endpoint; name ``"*"`` serves every model not named.
    factories
        Extra backend kinds: kind -> ``spec -> backend`` (e.g. ``{"mock": ...}`` in tests and
        plumbing checks; the runner itself knows only :data:`BACKENDS`).

    Returns
    -------
    ModelRouter
        Backends are built once per :meth:`EndpointSpec.share_key`; a model with a served id,
        a concurrency cap or a request rate is wrapped in :class:`LimitedBackend`.

    Raises
    ------
    ConfigError
        If there are no specs or a backend kind is unknown (before any backend is built).

    Examples
    --------
    >>> class Echo:
    ...     endpoint = "echo://"
    >>> r = build_router({"a": EndpointSpec(backend="echo"), "b": EndpointSpec(backend="echo",
    ...     served_model="B", concurrency=2)}, factories={"echo": lambda spec: Echo()})
    >>> r.endpoint_for("a"), r.endpoint_for("b")
    ('echo://#a', 'echo://[B]#b')
    """
    kinds = dict(_FACTORIES) | dict(factories or {})
    if not specs:
        raise ConfigError("build_router specs: expected at least one model; got none.")
    for name, spec in specs.items():
        if spec.backend not in kinds:
            raise ConfigError(
                f"model {name!r}: expected a backend from {sorted(kinds)}; got {spec.backend!r}."
            )
    shared: dict[tuple[Any, ...], Any] = {}
    clients: dict[str, Any] = {}
    for name, spec in specs.items():
        key = spec.share_key()
        if key not in shared:
            shared[key] = kinds[spec.backend](spec)
        backend = shared[key]
        if spec.served_model or spec.concurrency or spec.requests_per_minute:
            backend = LimitedBackend(
                backend,
                served_model=spec.served_model,
                concurrency=spec.concurrency,
                requests_per_minute=spec.requests_per_minute,
            )
        clients[name] = backend
    return ModelRouter(clients)


def parse_endpoint(text: str) -> tuple[str, EndpointSpec]:
    """``NAME=URL[,key_env=VAR][,served=ID][,concurrency=N][,rpm=R]`` -> (name, spec).

    Examples
    --------
    >>> name, spec = parse_endpoint("a=http://h:1/v1,key_env=A_KEY,concurrency=4")
    >>> name, spec.base_url, spec.api_key_env, spec.concurrency
    ('a', 'http://h:1/v1', 'A_KEY', 4)
    """
    name, sep, rest = text.partition("=")
    url, *extras = rest.split(",")
    if not sep or not name.strip() or not url.strip():
        raise ConfigError(
            f"endpoint: expected NAME=URL[,key_env=VAR][,served=ID][,concurrency=N][,rpm=R]; "
            f"got {text!r}."
        )
    fields: dict[str, Any] = {}
    keys = {"key_env": "api_key_env", "served": "served_model", "concurrency": "concurrency"}
    keys["rpm"] = "requests_per_minute"
    for item in extras:
        k, eq, v = item.partition("=")
        if not eq or k.strip() not in keys:
            raise ConfigError(
                f"endpoint {text!r}: expected options from {sorted(keys)} as KEY=VALUE; got "
                f"{item!r}."
            )
        field = keys[k.strip()]
        try:
            fields[field] = (
                int(v)
                if field == "concurrency"
                else float(v)
                if field == "requests_per_minute"
                else v.strip()
            )
        except ValueError:
            raise ConfigError(
                f"endpoint {text!r}: expected a number for {k!r}; got {v!r}."
            ) from None
    return name.strip(), EndpointSpec(backend="openai", base_url=url.strip(), **fields)
