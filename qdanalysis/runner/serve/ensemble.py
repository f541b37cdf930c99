"""One served chat request run through an MoA configuration: ensembles, roles, references.

An :class:`Ensemble` is a named :class:`~qdanalysis.configs.ConfigSpec` (Self-MoA, Mixed-MoA,
Self-MoA-Seq, plurality vote, USC or a single model) with the
:class:`~qdanalysis.runner.options.RunOptions` its proposers sample with.
:func:`run_ensemble` answers one chat request with it, through the runner's own code: the chat
becomes a :class:`~qdanalysis.runner.tasks.Question` whose task returns the chat's messages,
and :func:`qdanalysis.runner.moa.run_config` does the work, in two phases over one engine:

1. **references**: the configuration's proposer slots (the shared pool of the runner) are drawn
   concurrently; when fewer than :attr:`Ensemble.min_references` succeed the request fails
   with an :class:`EnsembleError` (never a single model's answer labelled as the ensemble);
2. **aggregation**: ``n`` independent aggregations (``n`` of the request) over the *same*
   references, concurrently, each on its own engine seeded with the references' rows. The last
   call of each aggregation (the aggregator, the last Self-MoA-Seq step, the one model of
   ``single``) is the *final call*: the request's ``temperature``, ``max_tokens`` and ``stop``
   apply to it, and its text is what the client gets (streamed when asked).

What the request's fields mean, by role:

* ``temperature``, ``max_tokens``, ``stop``: the final call only; proposers, intermediate
  Mixed-MoA layers and earlier Self-MoA-Seq steps keep the ensemble's settings (a request
  that omits one gets the ensemble's value);
* ``seed``: the run seed of the request, from which every call's seed and the aggregator's
  shuffle of the references derive (:func:`~qdanalysis.runner.engine.seed_for`): the same
  chat with the same seed gets the same answer from seed-honouring backends. Like a hosted
  model, a request without one gets a fresh random seed (reported, so it can be replayed);
  the ensemble's ``options.seed`` is not used for served requests;
* plurality answers the winning answer as the ensemble's scorer extracts it (ties: a seeded
  pick);
* ``n``: aggregation ``i`` sends its calls as ``sample_index=i`` with seed
  ``seed_for(seed, "choice", i)`` (``i = 0`` is the plain request), so ``n`` choices are
  distinct samples; offline aggregators (plurality) are deterministic and take ``n = 1``.

Neighbours: :mod:`qdanalysis.runner.serve.app` puts this behind HTTP;
:mod:`qdanalysis.runner.moa` is the MoA code (no second implementation here).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..._hashing import content_hash
from ...configs import AggregatorSpec, ConfigSpec
from ...errors import ConfigError, ProviderError, QDAnalysisError
from ..engine import Engine, endpoint_of, seed_for
from ..llm.base import ChatClient, ChatRequest, ChatResponse, complete_streaming
from ..moa import MoAResult, run_config, seq_windows
from ..options import RunOptions
from ..tasks import Question, Task, get_task

__all__ = [
    "ChatParams",
    "Ensemble",
    "EnsembleError",
    "Served",
    "ensemble_method",
    "run_ensemble",
]

DATASET = "served"
"""The ``dataset`` of a served request's rows."""


class EnsembleError(QDAnalysisError):
    """A served request failed; ``status``, ``type`` and ``code`` are its HTTP error.

    Parameters
    ----------
    message
        What happened and what to do (never a key).
    status
        HTTP status: 400 bad request, 502 upstream errors, 503 upstream rate limits or no
        capacity, 504 upstream timeouts.
    type
        OpenAI error ``type`` (``invalid_request_error``, ``upstream_error``, ...).
    code
        OpenAI error ``code``: a short machine-readable reason.
    retry_after
        Seconds the client should wait before retrying, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str,
        code: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error body ``{"error": {"message", "type", "code"}}``."""
        return {"error": {"message": str(self), "type": self.type, "code": self.code}}


def ensemble_method(spec: ConfigSpec) -> str:
    """The method name of a configuration as served: plurality and USC by their aggregator.

    Examples
    --------
    >>> from qdanalysis.configs import ProposerSlot
    >>> slot = ProposerSlot(model="m", sample_index=0)
    >>> ensemble_method(ConfigSpec(method="self_moa", proposers=(slot,)))
    'plurality'
    """
    if spec.method == "single":
        return "single"
    agg = spec.aggregator
    if agg.kind != "llm":
        return "plurality" if agg.kind == "plurality_vote" else agg.kind
    return "usc" if agg.prompt_id.startswith("usc") else spec.method


@dataclass(frozen=True, kw_only=True)
class Ensemble:
    """A served model: a configuration, its proposers' settings and its degraded-mode floor.

    Examples
    --------
    >>> from qdanalysis.runner.moa import method_configs
    >>> (spec,) = method_configs("self_moa", proposers=["m"], aggregator="m", n_samples=4)
    >>> e = Ensemble(name="moa", spec=spec, min_references=3)
    >>> e.method, e.n_references, e.min_references
    ('self_moa', 4, 3)
    """

    name: str
    """The model id clients ask for (``model`` of the request, listed by ``/v1/models``)."""
    spec: ConfigSpec
    """What runs: method, proposer slots, aggregator, layers, window/repeats."""
    options: RunOptions = field(default_factory=RunOptions)
    """Proposer sampling (temperature, top_p, max_tokens, stop), the run seed, tie breaks and
    Self-MoA-Seq copy order; ``on_proposer_error`` is ignored (see ``min_references``)."""
    min_references: int | None = None
    """Fewest successful references that still make an answer (None: every one)."""
    scorer: str = "exact"
    """How answers are extracted for plurality votes (a registered scorer: ``exact`` votes on
    the whole stripped text, ``math`` or ``multiple_choice`` on the extracted answer)."""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ConfigError(f"Ensemble.name: expected a non-empty id; got {self.name!r}.")
        n = self.n_references
        low = 1 if n else 0
        if self.min_references is not None and not low <= self.min_references <= max(n, low):
            raise ConfigError(
                f"Ensemble {self.name!r} min_references: expected an int in [{low}, {n}] (the "
                f"configuration has {n} references); got {self.min_references!r}."
            )
        if self.scorer == "judge":
            raise ConfigError(f"Ensemble {self.name!r} scorer: 'judge' cannot vote; got it.")
        get_task("chat", scorer=self.scorer, template="{question}")  # raises on unknown

    @property
    def method(self) -> str:
        """``self_moa``, ``mixed_moa``, ``self_moa_seq``, ``plurality``, ``usc`` or ``single``."""
        return ensemble_method(self.spec)

    @property
    def n_references(self) -> int:
        """References drawn per request (0 for ``single``, whose one call is the final one)."""
        return 0 if self.spec.method == "single" else self.spec.n_proposers

    @property
    def needed(self) -> int:
        """The references that must succeed."""
        return self.n_references if self.min_references is None else self.min_references

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (the ``/v1/models`` entry's ``x_moa``)."""
        return {
            "method": self.method,
            "config_id": self.spec.config_id,
            "config": self.spec.to_dict(),
            "n_references": self.n_references,
            "min_references": self.needed,
            "proposer_temperature": self.options.temperature,
        }


@dataclass(frozen=True, kw_only=True)
class ChatParams:
    """The fields of one chat-completions request that :func:`run_ensemble` reads."""

    messages: tuple[Mapping[str, str], ...]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    n: int = 1

    def __post_init__(self) -> None:
        if not self.messages:
            raise ConfigError("messages: expected at least one message; got none.")
        if not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"n: expected an int >= 1; got {self.n!r}.")


@dataclass(frozen=True, kw_only=True)
class Served:
    """What one served request produced."""

    texts: tuple[str, ...]
    """One text per choice."""
    finish_reasons: tuple[str | None, ...]
    references: tuple[dict[str, Any], ...]
    """Per reference: ``model, sample_index, status, prompt_tokens, completion_tokens,
    latency_s, cached`` (and ``error``)."""
    calls: tuple[dict[str, Any], ...]
    """Per call after the references (layers, aggregator steps): the same fields plus
    ``choice`` and ``role``."""
    seed: int = 0
    """The request's run seed (the request's ``seed``, or the fresh one drawn for it)."""
    rows: tuple[dict[str, Any], ...] = ()
    """Every outputs-table row involved (references once, then each choice's own rows, whose
    ``sample_index`` is the choice: what its calls were drawn as)."""

    def recorded(self, request_id: str) -> list[dict[str, Any]]:
        """The rows to store for a served request: ``question_id`` is the request's id (so
        each request is one question of the outputs table) and ``chat_id`` the chat's hash."""
        return [r | {"question_id": request_id, "chat_id": r["question_id"]} for r in self.rows]

    def usage(self, part: str | None = None) -> dict[str, int]:
        """Tokens of every call the request paid for (``part``: "references" or "calls").

        Cache hits cost nothing and are left out (they are listed, with ``cached: true``).
        """
        items = {"references": self.references, "calls": self.calls}
        chosen = [r for k, v in items.items() if part in (None, k) for r in v]
        paid = [r for r in chosen if not r.get("cached")]
        p = sum(int(r.get("prompt_tokens") or 0) for r in paid)
        c = sum(int(r.get("completion_tokens") or 0) for r in paid)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


@dataclass
class _Failures:
    """Why calls failed, by role (for the HTTP status of a failed request)."""

    kinds: list[str] = field(default_factory=list)
    retry_after: float | None = None

    def add(self, kind: str, retry_after: float | None = None) -> None:
        self.kinds.append(kind)
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)

    def status(self) -> tuple[int, str]:
        """504 when a call timed out, 503 when rate limited, else 502."""
        if "timeout" in self.kinds:
            return 504, "upstream_timeout"
        if "rate_limit" in self.kinds:
            return 503, "upstream_rate_limited"
        return 502, "upstream_error"


@dataclass(frozen=True, kw_only=True)
class _Final:
    """How the final call of one aggregation is sent."""

    index: int
    """Position of the final call among the aggregation's calls."""
    temperature: float | None
    max_tokens: int | None
    stop: tuple[str, ...] | None
    on_delta: Callable[[str], None] | None


class _RoleClient:
    """The client one phase of one request talks to: a role's timeout, overrides, streaming.

    It forwards to the shared (managed) client, bounding each call by the role's timeout
    (all retries included) and recording why calls failed. In the aggregation phase it sends
    choice ``i``'s calls as sample ``i`` and rewrites the final call (see :class:`_Final`).
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        role: str,
        timeout_s: float | None,
        failures: _Failures,
        choice: int = 0,
        final: _Final | None = None,
    ) -> None:
        self.client = client
        self.role = role
        self.timeout_s = timeout_s
        self.failures = failures
        self.choice = choice
        self.final = final
        self.n_calls = 0
        self.records: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        return str(self.client.endpoint)

    def endpoint_for(self, model: str) -> str:
        return endpoint_of(self.client, model)

    def _rewrite(self, request: ChatRequest, is_final: bool) -> ChatRequest:
        changes: dict[str, Any] = {}
        if self.choice:
            changes["sample_index"] = self.choice
            changes["seed"] = seed_for(request.seed, "choice", self.choice)
        f = self.final
        if is_final and f is not None:
            for name in ("temperature", "max_tokens", "stop"):
                if getattr(f, name) is not None:
                    changes[name] = getattr(f, name)
        return dataclasses.replace(request, **changes) if changes else request

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Forward one call within the role's time; record its accounting."""
        index = self.n_calls
        self.n_calls += 1
        is_final = self.final is not None and index == self.final.index
        request = self._rewrite(request, is_final)
        sink = self.final.on_delta if is_final and self.final is not None else None
        call = (
            complete_streaming(self.client, request, sink)
            if sink is not None
            else self.client.complete(request)
        )
        role = "final" if is_final else "intermediate" if self.final is not None else self.role
        record: dict[str, Any] = {"role": role}
        try:
            resp = await asyncio.wait_for(call, self.timeout_s)
        except TimeoutError:
            self.failures.add("timeout")
            raise ProviderError(
                f"{self.role} {request.model}: expected an answer within {self.timeout_s} s "
                "(the role's timeout, retries included); got none.",
                kind="fatal",
            ) from None
        except ProviderError as exc:
            text = str(exc)
            timed_out = exc.kind == "transient" and ("within" in text or "timed out" in text)
            self.failures.add("timeout" if timed_out else exc.kind, exc.retry_after)
            raise
        record |= _accounting(resp) | {"model": request.model, "choice": self.choice}
        self.records.append(record)
        return resp


def _accounting(resp: ChatResponse) -> dict[str, Any]:
    return {
        "prompt_tokens": resp.prompt_tokens,
        "completion_tokens": resp.completion_tokens,
        "latency_s": resp.latency_s,
        "cached": bool(resp.cached),
        "finish_reason": resp.finish_reason,
    }


@dataclass(frozen=True, kw_only=True)
class _ChatTask(Task):
    """The task of a served chat: its messages as they came; answers by the ensemble's scorer."""

    def messages(self, q: Question) -> list[dict[str, str]]:
        return [dict(m) for m in q.extra["messages"]]


def _question(params: ChatParams) -> Question:
    """The chat as a question (``question``: the last user turn, for the USC prompt)."""
    msgs = tuple(dict(m) for m in params.messages)
    users = [m["content"] for m in msgs if m["role"] == "user"]
    return Question(
        dataset=DATASET,
        question_id=content_hash([list(msgs)], length=16),
        question=users[-1] if users else msgs[-1]["content"],
        reference="",
        task="chat",
        extra={"messages": msgs},
    )


def _final_index(spec: ConfigSpec, n_ok: int) -> int:
    """Position of the final call among one aggregation's calls, given ``n_ok`` references."""
    if spec.method == "single":
        return 0
    layer_calls = (spec.layers - 1) * spec.n_proposers
    steps = 1
    if spec.method == "self_moa_seq":
        w, k = int(spec.window or 0), int(spec.repeats or 0)
        steps = len(seq_windows(n_ok, w, k)) if n_ok >= w else 1
    return layer_calls + steps - 1


def _reference(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in ("model", "sample_index", "status")}
    out |= {k: row.get(k) for k in ("prompt_tokens", "completion_tokens", "latency_s")}
    out["cached"] = bool(row.get("cached"))
    if row.get("status") != "ok":
        out["error"] = str(row.get("error") or "")[:300]
    return out


def _pool_spec(spec: ConfigSpec) -> ConfigSpec:
    """The plurality-vote configuration over the same slots: its pool is the references."""
    return ConfigSpec(method="mixed_moa", proposers=spec.proposers, aggregator=AggregatorSpec())


def _options(ensemble: Ensemble, params: ChatParams) -> RunOptions:
    # References that fail are skipped here and counted against min_references instead; a
    # served plurality vote answers one answer, so ties take a seeded pick. Like a hosted
    # model, a request without a seed gets fresh randomness (its seed is reported).
    seed = random.SystemRandom().randrange(2**31) if params.seed is None else params.seed
    return dataclasses.replace(
        ensemble.options, seed=seed, on_proposer_error="skip", tie_break="seeded"
    )


def _too_few(
    ensemble: Ensemble, refs: Sequence[Mapping[str, Any]], why: _Failures
) -> EnsembleError:
    ok = sum(r["status"] == "ok" for r in refs)
    status, code = why.status()
    first = next((r.get("error") for r in refs if r["status"] != "ok"), None)
    return EnsembleError(
        f"ensemble {ensemble.name!r} ({ensemble.method}): expected at least "
        f"{ensemble.needed} of {len(refs)} references to succeed; got {ok}. No answer is "
        f"given rather than a smaller ensemble's. First failure: {str(first)[:300]}. Retry "
        "later, or serve the ensemble with a lower min_references.",
        status=status,
        type="upstream_error",
        code=code,
        retry_after=why.retry_after,
    )


def _failed_final(ensemble: Ensemble, result: MoAResult, why: _Failures) -> EnsembleError:
    status, code = why.status()
    return EnsembleError(
        f"ensemble {ensemble.name!r} ({ensemble.method}): the final call failed: "
        f"{str(result.final.get('error'))[:300]}. Retry later.",
        status=status,
        type="upstream_error",
        code=code,
        retry_after=why.retry_after,
    )


@dataclass(frozen=True, kw_only=True)
class _Request:
    """One request's shared state: ensemble, question, options, tasks, failures."""

    ensemble: Ensemble
    client: ChatClient
    q: Question
    options: RunOptions
    tasks: Mapping[str, Task]
    failures: _Failures = field(default_factory=_Failures)

    def engine(self, client: ChatClient) -> Engine:
        return Engine(client=client, store=None, options=self.options, tasks=self.tasks)


async def _references(r: _Request, timeout_s: float | None) -> tuple[Engine, MoAResult]:
    """Phase 1: every reference, concurrently (the plurality configuration's pool)."""
    spec = r.ensemble.spec
    offline = spec.aggregator.kind != "llm"
    client = _RoleClient(r.client, role="proposer", timeout_s=timeout_s, failures=r.failures)
    eng = r.engine(client)
    result = await run_config(
        r.q, spec if offline else _pool_spec(spec), client=client, _engine=eng
    )
    return eng, result


async def _aggregation(
    r: _Request,
    pool: Mapping[Any, dict[str, Any]],
    final: _Final,
    choice: int,
    timeout_s: float | None,
) -> tuple[MoAResult, _RoleClient]:
    """Phase 2: one choice's aggregation over the references in ``pool``."""
    client = _RoleClient(
        r.client,
        role="aggregator",
        timeout_s=timeout_s,
        failures=r.failures,
        choice=choice,
        final=final,
    )
    eng = r.engine(client)
    eng.memory.update(pool)
    result = await run_config(r.q, r.ensemble.spec, client=client, _engine=eng)
    return result, client


def _start(ensemble: Ensemble, client: ChatClient, params: ChatParams) -> _Request:
    """The request's shared state; refuses ``n > 1`` for deterministic ensembles first."""
    offline = ensemble.spec.method != "single" and ensemble.spec.aggregator.kind != "llm"
    if offline and params.n > 1:
        raise EnsembleError(
            f"n: expected 1 for the deterministic {ensemble.method} ensemble "
            f"{ensemble.name!r}; got {params.n}. Ask for n=1.",
            status=400,
            type="invalid_request_error",
            code="invalid_n",
        )
    task = _ChatTask(
        name="chat", template="{question}", prompt_id="chat-v1", scorer=ensemble.scorer
    )
    return _Request(
        ensemble=ensemble,
        client=client,
        q=_question(params),
        options=_options(ensemble, params),
        tasks={"chat": task},
    )


async def _aggregations(
    r: _Request,
    pool: Mapping[Any, dict[str, Any]],
    n_ok: int,
    params: ChatParams,
    timeout_s: float | None,
    on_delta: Callable[[int, str], None] | None,
) -> list[tuple[MoAResult, _RoleClient]]:
    """Phase 2: ``params.n`` aggregations over the same references, concurrently."""
    finals = [
        _Final(
            index=_final_index(r.ensemble.spec, n_ok),
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            stop=params.stop,
            on_delta=None if on_delta is None else _bind(on_delta, i),
        )
        for i in range(params.n)
    ]
    return list(
        await asyncio.gather(
            *(_aggregation(r, pool, f, i, timeout_s) for i, f in enumerate(finals))
        )
    )


async def run_ensemble(
    ensemble: Ensemble,
    client: ChatClient,
    params: ChatParams,
    *,
    proposer_timeout_s: float | None = None,
    aggregator_timeout_s: float | None = None,
    on_delta: Callable[[int, str], None] | None = None,
) -> Served:
    """Answer one chat request with ``ensemble`` (see the module docstring for the phases).

    Parameters
    ----------
    ensemble
        What answers.
    client
        The upstream client (a :class:`~qdanalysis.runner.llm.managed.ManagedClient`, whose
        concurrency cap, retries, attempt timeout, cache and ledger then apply to every call).
    params
        The request's messages and sampling fields.
    proposer_timeout_s, aggregator_timeout_s
        Most seconds one call of the role may take, retries included (None: no bound beyond
        the client's own). The aggregator role covers every call after the references.
    on_delta
        ``(choice, text)``: receives the final calls' text as it is generated (a backend that
        cannot stream, or a cache hit, sends its whole text at once).

    Returns
    -------
    Served

    Raises
    ------
    EnsembleError
        400 when ``n > 1`` asks a deterministic (plurality) ensemble; 502/503/504 when fewer
        than ``ensemble.min_references`` references succeed, or the final call fails.
    """
    r = _start(ensemble, client, params)
    offline = ensemble.spec.method != "single" and ensemble.spec.aggregator.kind != "llm"
    refs: list[dict[str, Any]] = []
    pool: dict[Any, dict[str, Any]] = {}
    if ensemble.spec.method != "single":
        eng, result = await _references(r, proposer_timeout_s)
        refs = [row for row in result.rows if row["role"] == "proposer"]
        if sum(row["status"] == "ok" for row in refs) < ensemble.needed:
            raise _too_few(ensemble, refs, r.failures)
        if offline:
            return _served(r, [result], refs, [])
        pool = {k: v for k, v in eng.memory.items() if k[4] is None}
    n_ok = sum(row["status"] == "ok" for row in refs)
    done = await _aggregations(r, pool, n_ok, params, aggregator_timeout_s, on_delta)
    for res, _ in done:
        if res.final["status"] != "ok":
            raise _failed_final(ensemble, res, r.failures)
    return _served(r, [res for res, _ in done], refs, [c for _, c in done])


def _bind(on_delta: Callable[[int, str], None], choice: int) -> Callable[[str], None]:
    return lambda text: on_delta(choice, text)


def _served(
    r: _Request,
    results: Sequence[MoAResult],
    refs: Sequence[dict[str, Any]],
    clients: Sequence[_RoleClient],
) -> Served:
    """The served outcome of phase 2's results (or of phase 1's, for offline aggregators)."""
    finish = ["stop"] * len(results)
    for i, c in enumerate(clients):
        finals = [rec for rec in c.records if rec["role"] == "final"]
        finish[i] = (finals[-1].get("finish_reason") if finals else None) or "stop"
    ref_ids = {id(row) for row in refs}
    # Choice i's calls were drawn as sample i (see _RoleClient): its rows say so.
    own = [
        row | {"sample_index": i} if i else row
        for i, res in enumerate(results)
        for row in res.rows
        if id(row) not in ref_ids
    ]
    return Served(
        texts=tuple(str(res.final.get("output") or "") for res in results),
        finish_reasons=tuple(finish),
        references=tuple(_reference(row) for row in refs),
        calls=tuple(rec for c in clients for rec in c.records),
        seed=r.options.seed,
        rows=(*refs, *own),
    )
