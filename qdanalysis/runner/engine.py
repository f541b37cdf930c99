"""The run engine: one run's client, store, options and accounting; calls become rows.

:class:`Engine` turns a :class:`~qdanalysis.runner.llm.base.ChatRequest` into one row of the
outputs table (:func:`qdanalysis.schema.output_row`), grades it, stores it, and never makes a
call twice: a key already ``ok`` in the store (or made earlier in this run) is reused, but only
when the request that made it is the one this run would send (same ``request_key``, the response
cache's key); otherwise it raises, naming the settings that differ.

Neighbours: :mod:`qdanalysis.runner.moa` orchestrates methods over an engine;
:mod:`qdanalysis.runner.store` persists rows; :mod:`qdanalysis.runner.tasks` prompts and grades.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .._hashing import content_hash
from ..errors import ConfigError, ProviderError
from ..schema import output_row
from .answers import Graded, strip_think
from .llm.base import ChatClient, ChatRequest, ChatResponse, request_key
from .options import RunOptions
from .store import RowKey, RunStore, describe_differences, row_key
from .tasks import TASKS, Question, Task, judge_messages, parse_judgement

__all__ = ["Engine", "endpoint_of", "question_fields", "run_identity", "seed_for"]

log = logging.getLogger(__name__)


def seed_for(*parts: Any) -> int:
    """A request seed derived from the run seed and where the request is made.

    Examples
    --------
    >>> seed_for(0, "q") == seed_for(0, "q"), 0 <= seed_for(1) < 2**31
    (True, True)
    """
    return int(content_hash(list(parts), length=8), 16) % (2**31)


def question_fields(q: Question) -> dict[str, Any]:
    """The question's columns of a row."""
    return {
        "dataset": q.dataset,
        "question_id": q.question_id,
        "question": q.question,
        "reference": q.reference,
    }


def endpoint_of(client: ChatClient, model: str) -> str:
    """The endpoint serving ``model``: a router's per-model endpoint, else ``client.endpoint``."""
    route = getattr(client, "endpoint_for", None)
    return str(route(model)) if callable(route) else str(client.endpoint)


def run_identity(client: ChatClient, options: RunOptions) -> dict[str, Any]:
    """The settings that can change any row of a run: its options' identity and endpoint.

    Examples
    --------
    >>> from qdanalysis.testing import MockClient
    >>> run_identity(MockClient(endpoint="e"), RunOptions())["endpoint"]
    'e'
    """
    return {"options": options.identity(), "endpoint": str(client.endpoint)}


def _request_settings(endpoint: str, request: ChatRequest) -> dict[str, Any]:
    """What made a row, JSON-ready (the messages by hash): its ``request`` column."""
    fields = request.key_fields()
    fields["messages"] = content_hash(fields["messages"], length=16)
    return {"endpoint": endpoint} | fields


class Engine:
    """Shared state of one run: client, store, options, accounting, in-flight de-duplication.

    Parameters
    ----------
    client
        The chat client (wrap backends in :class:`~qdanalysis.runner.llm.managed.ManagedClient`).
    store
        Where rows go and are looked up; None keeps them in memory. A store is claimed for
        :func:`run_identity` (see :meth:`RunStore.claim`).
    options
        The run's options.
    tasks
        Extra (custom) tasks by name.
    aggregator_client
        The client of aggregator calls (e.g. a :class:`ManagedClient` with its own timeout and
        ledger over the same backend); None: ``client``. Its endpoints must be ``client``'s.

    Raises
    ------
    ConfigError
        If ``store`` holds rows made with other settings.
    """

    def __init__(
        self,
        *,
        client: ChatClient,
        store: RunStore | None,
        options: RunOptions,
        tasks: Mapping[str, Task] | None = None,
        aggregator_client: ChatClient | None = None,
    ) -> None:
        self.client = client
        self.aggregator_client = aggregator_client or client
        self.store = store
        self.options = options
        self.tasks = dict(TASKS) | dict(tasks or {})
        self.memory: dict[RowKey, dict[str, Any]] = {}
        self.inflight: dict[RowKey, asyncio.Future[dict[str, Any]]] = {}
        self.n_calls = self.n_cache_hits = self.prompt_tokens = self.completion_tokens = 0
        self.new_rows: list[dict[str, Any]] = []
        self.on_row: Callable[[dict[str, Any]], None] | None = None
        if store is not None:
            store.claim(run_identity(client, options), record={"options": options.to_dict()})

    def task(self, q: Question) -> Task:
        """The task of question ``q``."""
        try:
            return self.tasks[q.task]
        except KeyError:
            raise ConfigError(
                f"question {q.question_id!r}: expected a task from {sorted(self.tasks)}; got "
                f"{q.task!r}."
            ) from None

    def request(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, str]],
        temperature: float | None,
        seed: int,
        sample_index: int = 0,
        max_tokens: int | None = None,
    ) -> ChatRequest:
        """A request with the run's limits (``temperature`` None: the proposer default;
        ``max_tokens`` None: ``options.max_tokens``)."""
        o = self.options
        return ChatRequest(
            model=model,
            messages=tuple(messages),
            temperature=o.temperature if temperature is None else temperature,
            max_tokens=o.max_tokens if max_tokens is None else max_tokens,
            top_p=o.top_p,
            stop=o.stop,
            seed=seed,
            sample_index=sample_index,
        )

    def existing(self, key: RowKey) -> dict[str, Any] | None:
        """The stored ok row of ``key``, or the row this run made for it, or None."""
        if self.store is not None:
            row = self.store.get(key)
            if row is not None:
                return row
        return self.memory.get(key)

    def save(self, row: dict[str, Any]) -> dict[str, Any]:
        """Remember and store one new row; returns it."""
        self.new_rows.append(row)
        # This run remembers its own error rows too: a failed key is not asked twice in one
        # run (the store only serves ok rows, so a resumed run retries it).
        self.memory[row_key(row)] = row
        if self.on_row is not None:
            self.on_row(row)
        if self.store is not None:
            self.store.append([row])
        return row

    def book(self, resp: ChatResponse) -> None:
        """Count one call's tokens and cache hit."""
        self.n_calls += 1
        self.n_cache_hits += bool(resp.cached)
        self.prompt_tokens += resp.prompt_tokens or 0
        self.completion_tokens += resp.completion_tokens or 0

    def _check_reuse(self, row: Mapping[str, Any], request: ChatRequest) -> None:
        endpoint = endpoint_of(self.client, request.model)
        if row.get("request_key") == request_key(endpoint, request):
            return
        old = row.get("request")
        old = json.loads(old) if isinstance(old, str) else {}
        diff = describe_differences(old, _request_settings(endpoint, request))
        raise ConfigError(
            f"{row['question_id']!r} {row['model']}#{row['sample_index']} ({row['role']}, layer "
            f"{row['layer']}): expected the stored row to come from the request this run "
            f"sends; got {'; '.join(diff) or 'an unrecorded request'} (stored -> this run). "
            "A row is reused only when every setting that made it is equal: write this run to "
            "a new store directory, or rerun with the stored settings."
        )

    async def once(
        self,
        key: RowKey,
        make: Callable[[], Awaitable[dict[str, Any]]],
        request: ChatRequest | None = None,
    ) -> dict[str, Any]:
        """The row of ``key``, reused (if ``request`` made it) or made once, even concurrently."""
        row = self.existing(key)
        if row is not None:
            if request is not None:
                self._check_reuse(row, request)
            return row
        fut = self.inflight.get(key)
        if fut is not None:
            return await fut
        fut = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            row = await make()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self.inflight.pop(key, None)
        fut.set_result(row)
        return row

    async def call_row(
        self,
        q: Question,
        key: RowKey,
        request: ChatRequest,
        fields: Mapping[str, Any],
        response: ChatResponse | None = None,
        finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The row of one call: reused if stored with this request, else called, graded, saved.

        ``response`` supplies an answer already drawn (a batched ``complete_n`` sample);
        ``finish`` rewrites a new ok row before it is stored (e.g. USC takes the answer of the
        response it picked).
        """
        return await self.once(
            key, lambda: self._generate(q, request, fields, response, finish), request=request
        )

    async def _generate(
        self,
        q: Question,
        request: ChatRequest,
        fields: Mapping[str, Any],
        response: ChatResponse | None,
        finish: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> dict[str, Any]:
        endpoint = endpoint_of(self.client, request.model)
        made = question_fields(q) | {
            "model": request.model,
            "temperature": request.temperature,
            "sample_index": request.sample_index,
            "seed": request.seed,
            "request_key": request_key(endpoint, request),
            "request": json.dumps(_request_settings(endpoint, request), sort_keys=True),
        }
        try:
            if response is None:
                agg = fields.get("role") == "aggregator"
                client = self.aggregator_client if agg else self.client
                response = await client.complete(request)
                self.book(response)
            graded, extra = await self.grade(self.task(q), q, response.text)
        except ProviderError as exc:
            log.warning(
                "%s %s#%s failed: %s", q.question_id, request.model, request.sample_index, exc
            )
            error = f"{type(exc).__name__}({exc.kind}): {exc}"
            return self.save(output_row(made, **fields, status="error", error=error))
        result = {
            "output": response.text,
            "answer": graded.answer,
            "answer_key": graded.answer_key,
            "correct": graded.correct,
            "extraction": graded.extraction,
            "finish_reason": response.finish_reason,
            "prompt_tokens": response.prompt_tokens,
            "completion_tokens": response.completion_tokens,
            "latency_s": response.latency_s,
            "cached": bool(response.cached),
        }
        row = output_row(made, **fields, **result, status="ok", **extra)
        return self.save(finish(row) if finish is not None else row)

    async def grade(self, task: Task, q: Question, text: str) -> tuple[Graded, dict[str, Any]]:
        """Grade a response; judged tasks call the judge model (extra columns returned)."""
        if not task.judged:
            return task.grade(text, q), {}
        judge = self.options.judge_model
        if judge is None:
            raise ConfigError(f"task {task.name!r} is judged: expected judge_model; got None.")
        # Judge both orders (candidate as Response A, then as Response B) and average the parsed
        # verdicts, so a judge that prefers one position cannot move the score.
        candidate = strip_think(text)[0]
        verdicts: list[float] = []
        replies: list[str] = []
        for swap in (False, True):
            req = ChatRequest(
                model=judge,
                messages=tuple(judge_messages(q, candidate, swap=swap)),
                temperature=0.0,
                max_tokens=64,
                seed=seed_for(self.options.seed, "judge"),
            )
            resp = await self.client.complete(req)
            self.book(resp)
            replies.append(resp.text)
            score = parse_judgement(resp.text, swap=swap)
            if score is not None:
                verdicts.append(score)
        correct = sum(verdicts) / len(verdicts) if verdicts else 0.0
        return (
            Graded(answer=None, answer_key=None, correct=correct, extraction=None),
            {
                "judge_model": judge,
                "judge_output": replies[0],
                "judge_output_swapped": replies[1],
                "judge_parsed": len(verdicts),
            },
        )

    def offline_row(self, key: RowKey, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The row of an offline aggregator (no call): reused if stored, else made and saved."""
        row = self.existing(key)
        return row if row is not None else self.save(make())
