"""Mixture-of-Agents runners: Mixed-MoA, Self-MoA, Self-MoA-Seq, baselines, whole experiments.

Every call becomes one row of the outputs table (see :mod:`qdanalysis.runner.store` for the
columns):

* **proposer rows** (``role="proposer"``, ``layer=0``, ``config_id=None``): sample ``k`` of model
  ``m`` for a question is generated once and shared by every configuration naming ``(m, k)``;
* **intermediate rows** (Mixed-MoA with ``layers > 1``): ``role="proposer"``, ``layer >= 1``,
  ``config_id`` set;
* **aggregator rows** (``role="aggregator"``): ``config_id``, ``config`` (the spec's JSON),
  ``layer`` = number of proposer layers, ``step`` (0, or 0, 1, … for Self-MoA-Seq windows),
  ``is_final``, ``n_references`` and ``shown`` (JSON list of what the aggregator saw, in
  order). Offline baselines (plurality vote, oracle, single model) also write one aggregator row,
  without a call, so performance is always the final aggregator row's ``correct``.

The aggregator sees the proposers in a seeded shuffle (slots are stored sorted); Self-MoA-Seq
consumes samples in slot order. ``<think>…</think>`` traces are stripped from references
(``n_think_stripped`` records how many). A proposer that fails after the client's retries is an
``status="error"`` row; ``on_proposer_error="fail"`` (default) then marks the configuration
failed for that question (an aggregator error row, retried on resume), ``"skip"`` runs it with
the remaining references (``n_references`` says how many were shown).

Neighbours: :mod:`qdanalysis.runner.tasks` prompts and grades; :mod:`qdanalysis.runner.llm` makes
the calls
(wrap backends in :class:`~qdanalysis.runner.llm.managed.ManagedClient` for retries, caching and the
concurrency cap); :mod:`qdanalysis.runner.store` keeps rows; :mod:`qdanalysis.run` is the CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._hashing import content_hash
from ..configs import AggregatorSpec, ConfigSpec, ProposerSlot
from ..errors import ConfigError, ProviderError
from . import prompts
from .answers import Graded, strip_think
from .llm.base import ChatClient, ChatRequest, ChatResponse
from .store import RowKey, RunStore, row_key
from .tasks import TASKS, Question, Task, judge_messages, parse_judgement

__all__ = [
    "PROMPT_STYLES",
    "MoAResult",
    "RunSummary",
    "choose_window",
    "mixed_moa",
    "plurality_vote",
    "run_config",
    "run_experiment",
    "self_moa",
    "self_moa_seq",
    "seq_windows",
    "usc",
]

log = logging.getLogger(__name__)

#: Aggregator prompt ids and how each is assembled.
PROMPT_STYLES: Mapping[str, str] = {
    "moa-v1": "moa",
    "moa-zeroeval-v1": "zeroeval",
    "usc-ours-v1": "usc",
}
DEFAULT_TEMPERATURE = 0.7
"""Proposer temperature when a slot gives none (the paper's 0.7)."""


@dataclass(frozen=True, kw_only=True)
class MoAResult:
    """The rows one configuration produced (or reused) for one question."""

    final: dict[str, Any]
    """The final aggregator row (``is_final=True``); ``status="error"`` if it failed."""
    rows: tuple[dict[str, Any], ...]
    """Every row involved: proposer pool rows, intermediate rows, aggregator rows."""

    @property
    def answer(self) -> str | None:
        """The configuration's answer."""
        return self.final.get("answer")

    @property
    def correct(self) -> float | None:
        """The configuration's score (None when it failed)."""
        return self.final.get("correct")


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """What :func:`run_experiment` did."""

    n_rows: int
    """Rows in the store with ``status="ok"`` after the run."""
    n_new_rows: int
    """Rows written by this run (ok and error)."""
    n_errors: int
    """Error rows written by this run."""
    n_calls: int
    """Model calls this run made (cache hits included, store hits not)."""
    n_cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float
    n_failed_configs: int
    """(configuration, question) pairs whose final aggregator row is an error."""

    def __str__(self) -> str:
        return (
            f"rows {self.n_rows} (new {self.n_new_rows}), errors {self.n_errors}, calls "
            f"{self.n_calls} (cache hits {self.n_cache_hits}), tokens {self.prompt_tokens} prompt"
            f" + {self.completion_tokens} completion, failed configurations "
            f"{self.n_failed_configs}, time {self.elapsed_s:.1f} s"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seed_for(*parts: Any) -> int:
    return int(content_hash(list(parts), length=8), 16) % (2**31)


class _Context:
    """Shared state of one run: client, store, accounting, in-flight de-duplication."""

    def __init__(
        self,
        *,
        client: ChatClient,
        store: RunStore | None,
        seed: int,
        max_tokens: int,
        on_proposer_error: str,
        judge_model: str | None,
        tasks: Mapping[str, Task] | None,
        copies_first: bool,
        default_temperature: float,
    ) -> None:
        if on_proposer_error not in ("fail", "skip"):
            raise ConfigError(
                f"on_proposer_error: expected 'fail' or 'skip'; got {on_proposer_error!r}."
            )
        self.client = client
        self.store = store
        self.seed = seed
        self.max_tokens = max_tokens
        self.on_proposer_error = on_proposer_error
        self.judge_model = judge_model
        self.tasks = dict(TASKS) | dict(tasks or {})
        self.copies_first = copies_first
        self.default_temperature = default_temperature
        self.memory: dict[RowKey, dict[str, Any]] = {}
        self.inflight: dict[RowKey, asyncio.Future[dict[str, Any]]] = {}
        self.n_calls = 0
        self.n_cache_hits = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.n_new = 0
        self.n_errors = 0
        self.on_row: Callable[[dict[str, Any]], None] | None = None

    def task(self, q: Question) -> Task:
        try:
            return self.tasks[q.task]
        except KeyError:
            raise ConfigError(
                f"question {q.question_id!r}: expected a task from {sorted(self.tasks)}; got "
                f"{q.task!r}."
            ) from None

    def existing(self, key: RowKey) -> dict[str, Any] | None:
        if self.store is not None:
            row = self.store.get(key)
            if row is not None:
                return row
        return self.memory.get(key)

    def save(self, rows: Sequence[dict[str, Any]]) -> None:
        for r in rows:
            self.n_new += 1
            self.n_errors += r["status"] == "error"
            # This run remembers its own error rows too: a failed key is not asked twice in
            # one run (the store only serves ok rows, so a resumed run retries it).
            self.memory[row_key(r)] = r
            if self.on_row is not None:
                self.on_row(r)
        if self.store is not None:
            self.store.append(rows)

    def book(self, resp: ChatResponse) -> None:
        self.n_calls += 1
        self.n_cache_hits += bool(resp.cached)
        self.prompt_tokens += resp.prompt_tokens or 0
        self.completion_tokens += resp.completion_tokens or 0

    async def once(
        self, key: RowKey, make: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Return the stored ok row of ``key`` or compute it once, even when asked concurrently."""
        row = self.existing(key)
        if row is not None:
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

    async def grade(self, task: Task, q: Question, text: str) -> tuple[Graded, dict[str, Any]]:
        """Grade a response; judged tasks call the judge model (extra columns returned)."""
        if not task.judged:
            return task.grade(text, q), {}
        if self.judge_model is None:
            raise ConfigError(
                f"task {task.name!r} is judged: pass judge_model= (CLI: --judge-model)."
            )
        # Judge both orders (candidate as Response A, then as Response B) and average the parsed
        # verdicts, so a judge that prefers one position cannot move the score.
        candidate = strip_think(text)[0]
        verdicts: list[float] = []
        replies: list[str] = []
        for swap in (False, True):
            req = ChatRequest(
                model=self.judge_model,
                messages=tuple(judge_messages(q, candidate, swap=swap)),
                temperature=0.0,
                max_tokens=64,
                seed=_seed_for(self.seed, "judge"),
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
                "judge_model": self.judge_model,
                "judge_output": replies[0],
                "judge_output_swapped": replies[1],
                "judge_parsed": len(verdicts),
            },
        )


def _base_row(q: Question) -> dict[str, Any]:
    return {
        "dataset": q.dataset,
        "question_id": q.question_id,
        "question": q.question,
        "reference": q.reference,
    }


def _pool_key(q: Question, model: str, k: int) -> RowKey:
    return (q.dataset, q.question_id, model, k, None, "proposer", 0, None)


async def _generate(
    ctx: _Context,
    q: Question,
    request: ChatRequest,
    fields: dict[str, Any],
    response: ChatResponse | None = None,
) -> dict[str, Any]:
    """Call the model (unless ``response`` is given), grade, build and save one row."""
    row = (
        _base_row(q)
        | {
            "model": request.model,
            "temperature": request.temperature,
            "sample_index": request.sample_index,
            "seed": request.seed,
        }
        | fields
    )
    try:
        if response is None:
            response = await ctx.client.complete(request)
            ctx.book(response)
        graded, extra = await ctx.grade(ctx.task(q), q, response.text)
    except ProviderError as exc:
        log.warning("%s %s#%s failed: %s", q.question_id, request.model, request.sample_index, exc)
        row |= {
            "output": "",
            "answer": None,
            "answer_key": None,
            "correct": None,
            "extraction": None,
            "finish_reason": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "latency_s": None,
            "cached": False,
            "status": "error",
            "error": f"{type(exc).__name__}({exc.kind}): {exc}",
            "created_at": _now(),
        }
        ctx.save([row])
        return row
    row |= {
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
        "status": "ok",
        "error": None,
        "created_at": _now(),
    } | extra
    ctx.save([row])
    return row


def _proposer_request(ctx: _Context, q: Question, model: str, k: int, temp: float) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=tuple(ctx.task(q).messages(q)),
        temperature=temp,
        max_tokens=ctx.max_tokens,
        seed=_seed_for(ctx.seed, q.dataset, q.question_id, model),
        sample_index=k,
    )


def _proposer_fields(ctx: _Context, q: Question) -> dict[str, Any]:
    return {
        "role": "proposer",
        "layer": 0,
        "config_id": None,
        "step": None,
        "prompt_id": ctx.task(q).prompt_id,
    }


async def _pool_row(ctx: _Context, q: Question, slot: ProposerSlot) -> dict[str, Any]:
    temp = ctx.default_temperature if slot.temperature is None else slot.temperature
    req = _proposer_request(ctx, q, slot.model, slot.sample_index, temp)
    return await ctx.once(
        _pool_key(q, slot.model, slot.sample_index),
        lambda: _generate(ctx, q, req, _proposer_fields(ctx, q)),
    )


async def _pool_batch(
    ctx: _Context, q: Question, model: str, temp: float, indices: Sequence[int]
) -> None:
    """Draw contiguous samples of one (question, model) with ``complete_n`` when available."""
    missing = [k for k in indices if ctx.existing(_pool_key(q, model, k)) is None]
    complete_n = getattr(ctx.client, "complete_n", None)
    if callable(complete_n) and len(missing) > 1:
        runs: list[list[int]] = []
        for k in sorted(missing):
            if runs and k == runs[-1][-1] + 1:
                runs[-1].append(k)
            else:
                runs.append([k])
        for run in runs:
            req = _proposer_request(ctx, q, model, run[0], temp)
            try:
                resps = await complete_n(req, len(run))
            except ProviderError:
                break  # fall back to one call per sample: exact error rows per sample
            for k, resp in zip(run, resps, strict=True):
                ctx.book(resp)
                r = dataclasses.replace(req, sample_index=k)

                def make(
                    r: ChatRequest = r, resp: ChatResponse = resp
                ) -> Awaitable[dict[str, Any]]:
                    return _generate(ctx, q, r, _proposer_fields(ctx, q), resp)

                await ctx.once(_pool_key(q, model, k), make)
    slots = [ProposerSlot(model=model, sample_index=k, temperature=temp) for k in missing]
    await asyncio.gather(*(_pool_row(ctx, q, s) for s in slots))


def _order(ctx: _Context, spec: ConfigSpec, q: Question) -> list[int]:
    idx = list(range(spec.n_proposers))
    if spec.method != "self_moa_seq":
        random.Random(_seed_for(ctx.seed, spec.config_id, q.dataset, q.question_id)).shuffle(idx)
    return idx


def seq_windows(n_samples: int, window: int, repeats: int) -> list[list[int]]:
    """Sample positions shown at each Self-MoA-Seq step (the synthesis copies not included).

    Step 0 shows samples ``0..window-1``; each later step shows the next ``window - repeats``
    unseen samples (the last may hold fewer) next to ``repeats`` copies of the synthesis.

    Examples
    --------
    >>> seq_windows(10, 6, 3)
    [[0, 1, 2, 3, 4, 5], [6, 7, 8], [9]]
    >>> len(seq_windows(30, 6, 3)) == 1 + math.ceil((30 - 6) / (6 - 3))
    True
    """
    if not 1 <= repeats < window <= n_samples:
        raise ConfigError(
            f"seq_windows: expected 1 <= repeats < window <= n_samples; got repeats={repeats}, "
            f"window={window}, n_samples={n_samples}."
        )
    out = [list(range(window))]
    i = window
    while i < n_samples:
        new = list(range(i, min(i + window - repeats, n_samples)))
        out.append(new)
        i += len(new)
    return out


def choose_window(
    sample_tokens: Sequence[int],
    *,
    context_length: int,
    prompt_tokens: int,
    max_tokens: int,
    repeats: int,
    n_samples: int | None = None,
    per_reference_overhead: int = 8,
) -> int:
    """Largest Self-MoA-Seq window that fits the aggregator's context.

    Rule: every shown item is budgeted at ``L + overhead`` tokens, where ``L`` is the larger of
    the longest measured sample and ``max_tokens`` (the synthesis copies can be that long), and
    ``w = floor((context_length - prompt_tokens - max_tokens) / (L + overhead))``, capped at
    ``n_samples`` (a window cannot show more samples than one question has).

    Parameters
    ----------
    sample_tokens
        Measured token lengths of the samples (all questions pooled).
    context_length
        The aggregator's context window in tokens.
    prompt_tokens
        Tokens of the system paragraph and the longest question.
    max_tokens
        New tokens reserved for the aggregator's answer.
    repeats
        Copies ``k`` of the synthesis; the window must exceed it.
    n_samples
        Samples per question, the cap on the window; ``len(sample_tokens)`` when None (the
        lengths of one question's samples).

    Raises
    ------
    ConfigError
        If even ``repeats + 1`` items do not fit.

    Examples
    --------
    >>> choose_window([100, 300, 200], context_length=4096, prompt_tokens=200, max_tokens=400,
    ...               repeats=1)
    3
    >>> choose_window([100] * 20, context_length=4096, prompt_tokens=200, max_tokens=400, repeats=3)
    8
    >>> choose_window([100] * 20, context_length=4096, prompt_tokens=200, max_tokens=400, repeats=3,
    ...               n_samples=6)
    6
    """
    if not sample_tokens:
        raise ConfigError("choose_window: expected measured sample lengths; got none.")
    per = max(max(sample_tokens), max_tokens) + per_reference_overhead
    cap = len(sample_tokens) if n_samples is None else n_samples
    w = min((context_length - prompt_tokens - max_tokens) // per, cap)
    if w < repeats + 1:
        raise ConfigError(
            f"choose_window: expected room for at least repeats + 1 = {repeats + 1} items; only "
            f"{max(w, 0)} fit in {context_length} tokens. Lower --max-tokens or --repeats."
        )
    return int(w)


def plurality_vote(
    rows: Sequence[Mapping[str, Any]], *, tie_break: str = "expected", seed: int = 0
) -> tuple[str | None, str | None, float]:
    """Most common ``answer_key`` among rows; null keys never win.

    Parameters
    ----------
    rows
        Graded rows (``answer``, ``answer_key``, ``correct``).
    tie_break
        ``"expected"`` (default): the score is the mean ``correct`` of the tied keys, i.e. the
        expected accuracy of a uniform pick (the analysis side's rule); the answer lists the tied
        answers joined by ``" | "`` and the key is None when several tie. ``"seeded"``: one tied
        key picked with ``random.Random(seed)``.

    Returns
    -------
    tuple
        ``(answer, answer_key, correct)``; ``(None, None, 0.0)`` when no row has a key.

    Examples
    --------
    >>> rows = [{"answer": "4", "answer_key": "4", "correct": 1.0},
    ...         {"answer": "5", "answer_key": "5", "correct": 0.0}]
    >>> plurality_vote(rows)
    ('4 | 5', None, 0.5)
    >>> plurality_vote(rows + [rows[1]])
    ('5', '5', 0.0)
    """
    counts = Counter(r["answer_key"] for r in rows if r.get("answer_key") is not None)
    if not counts:
        return None, None, 0.0
    top = max(counts.values())
    tied = sorted(k for k, c in counts.items() if c == top)
    first = {k: next(r for r in rows if r.get("answer_key") == k) for k in tied}
    if len(tied) == 1:
        r = first[tied[0]]
        return r.get("answer"), tied[0], float(r["correct"])
    if tie_break == "expected":
        answer = " | ".join(str(first[k].get("answer")) for k in tied)
        return answer, None, sum(float(first[k]["correct"]) for k in tied) / len(tied)
    if tie_break == "seeded":
        k = random.Random(seed).choice(tied)
        return first[k].get("answer"), k, float(first[k]["correct"])
    raise ConfigError(f"tie_break: expected 'expected' or 'seeded'; got {tie_break!r}.")


def _agg_key(q: Question, spec: ConfigSpec, model: str, step: int) -> RowKey:
    return (q.dataset, q.question_id, model, 0, spec.config_id, "aggregator", spec.layers, step)


def _agg_fields(
    spec: ConfigSpec, step: int, is_final: bool, shown: Sequence[str]
) -> dict[str, Any]:
    return {
        "role": "aggregator",
        "layer": spec.layers,
        "config_id": spec.config_id,
        "config": spec.to_json(),
        "step": step,
        "is_final": is_final,
        "n_references": len(shown),
        "shown": json.dumps(list(shown)),
        "prompt_id": spec.aggregator.prompt_id if spec.aggregator.kind == "llm" else None,
    }


def _offline_row(
    q: Question,
    spec: ConfigSpec,
    model: str,
    shown: Sequence[str],
    *,
    output: str,
    answer: str | None,
    key: str | None,
    correct: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return (
        _base_row(q)
        | {"model": model, "temperature": None, "sample_index": 0, "seed": None}
        | _agg_fields(spec, 0, True, shown)
        | {
            "output": output,
            "answer": answer,
            "answer_key": key,
            "correct": correct,
            "extraction": None,
            "finish_reason": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "latency_s": 0.0,
            "cached": False,
            "status": "ok",
            "error": None,
            "created_at": _now(),
        }
        | dict(extra or {})
    )


def _failed_row(
    q: Question, spec: ConfigSpec, model: str, step: int, shown: Sequence[str], error: str
) -> dict[str, Any]:
    return (
        _base_row(q)
        | {"model": model, "temperature": None, "sample_index": 0, "seed": None}
        | _agg_fields(spec, step, True, shown)
        | {
            "output": "",
            "answer": None,
            "answer_key": None,
            "correct": None,
            "status": "error",
            "error": error,
            "cached": False,
            "created_at": _now(),
        }
    )


def _tag(row: Mapping[str, Any]) -> str:
    layer = row.get("layer") or 0
    base = f"{row['model']}#{row['sample_index']}"
    return base if layer == 0 else f"L{layer}:{base}"


async def run_config(
    question: Question,
    spec: ConfigSpec,
    *,
    client: ChatClient,
    store: RunStore | None = None,
    seed: int = 0,
    max_tokens: int = 2048,
    on_proposer_error: str = "fail",
    judge_model: str | None = None,
    copies_first: bool = True,
    tie_break: str = "expected",
    default_temperature: float = DEFAULT_TEMPERATURE,
    _ctx: _Context | None = None,
) -> MoAResult:
    """Run one configuration on one question (rows already in ``store`` are reused).

    Parameters
    ----------
    question
        The question (its ``task`` names how to prompt and grade).
    spec
        The configuration: method, proposer slots, aggregator, layers, window/repeats.
    client
        A chat client; wrap backends in :class:`~qdanalysis.runner.llm.managed.ManagedClient`.
    store
        Where rows go and are looked up (None: in memory only).
    seed
        Run seed: request seeds and the aggregator's shuffle derive from it.
    max_tokens
        Completion limit of every call.
    on_proposer_error
        ``"fail"`` or ``"skip"``, see the module notes.
    judge_model
        Judge for ``open`` tasks.
    copies_first
        Self-MoA-Seq: synthesis copies before (True) or after the new samples.
    tie_break
        Plurality vote tie rule, see :func:`plurality_vote`.
    default_temperature
        Proposer temperature of slots without one.

    Returns
    -------
    MoAResult
    """
    ctx = _ctx or _Context(
        client=client,
        store=store,
        seed=seed,
        max_tokens=max_tokens,
        on_proposer_error=on_proposer_error,
        judge_model=judge_model,
        tasks=None,
        copies_first=copies_first,
        default_temperature=default_temperature,
    )
    agg = spec.aggregator
    task = ctx.task(question)
    pool = await asyncio.gather(*(_pool_row(ctx, question, s) for s in spec.proposers))
    order = _order(ctx, spec, question)
    rows = [pool[i] for i in order]
    agg_model = (
        agg.model
        if agg.kind == "llm" and spec.method != "single"
        else spec.proposers[0].model
        if spec.method == "single"
        else agg.kind
    )
    assert_model = agg_model or agg.kind
    failed = [r for r in rows if r["status"] != "ok"]
    if failed and (ctx.on_proposer_error == "fail" or len(failed) == len(rows)):
        final_key = _agg_key(question, spec, assert_model, 0)
        existing = ctx.existing(final_key)
        if existing is not None:
            return MoAResult(final=existing, rows=(*pool, existing))
        err = f"proposer(s) failed: {', '.join(_tag(r) for r in failed)}"
        row = _failed_row(question, spec, assert_model, 0, [_tag(r) for r in rows], err)
        ctx.save([row])
        return MoAResult(final=row, rows=(*pool, row))
    rows = [r for r in rows if r["status"] == "ok"]
    if spec.method == "single":
        if spec.n_proposers != 1:
            raise ConfigError(
                f"ConfigSpec method 'single': expected one proposer slot; got {spec.n_proposers}."
            )
        r = rows[0]
        key = _agg_key(question, spec, assert_model, 0)
        final = ctx.existing(key) or _offline_row(
            question,
            spec,
            assert_model,
            [_tag(r)],
            output=r["output"],
            answer=r["answer"],
            key=r["answer_key"],
            correct=float(r["correct"]),
        )
        if ctx.existing(key) is None:
            ctx.save([final])
        return MoAResult(final=final, rows=(*pool, final))
    if agg.kind in ("plurality_vote", "oracle"):
        key = _agg_key(question, spec, agg.kind, 0)
        agg_row = ctx.existing(key)
        if agg_row is None:
            if agg.kind == "plurality_vote":
                ans, akey, corr = plurality_vote(rows, tie_break=tie_break, seed=ctx.seed)
            else:
                best = max(rows, key=lambda r: float(r["correct"]))
                ans, akey, corr = best["answer"], best["answer_key"], float(best["correct"])
            agg_row = _offline_row(
                question,
                spec,
                agg.kind,
                [_tag(r) for r in rows],
                output=ans or "",
                answer=ans,
                key=akey,
                correct=corr,
            )
            ctx.save([agg_row])
        return MoAResult(final=agg_row, rows=(*pool, agg_row))
    if agg.prompt_id not in PROMPT_STYLES:
        raise ConfigError(
            f"AggregatorSpec.prompt_id: expected one of {sorted(PROMPT_STYLES)}; got "
            f"{agg.prompt_id!r}."
        )
    style = PROMPT_STYLES[agg.prompt_id]
    base_messages = task.messages(question)
    all_rows: list[dict[str, Any]] = list(pool)

    def refs_of(rs: Sequence[Mapping[str, Any]]) -> tuple[list[str], int]:
        stripped = [strip_think(r["output"]) for r in rs]
        return [s for s, _ in stripped], sum(int(w) for _, w in stripped)

    # Intermediate layers (Mixed-MoA depth): each slot model reruns on the previous layer.
    for layer in range(1, spec.layers):
        refs, n_think = refs_of(rows)
        shown = [_tag(r) for r in rows]
        msgs = tuple(prompts.inject_references(base_messages, refs, style=style))

        async def one(
            slot: ProposerSlot,
            layer: int = layer,
            msgs: Any = msgs,
            shown: list[str] = shown,
            n_think: int = n_think,
        ) -> dict[str, Any]:
            temp = ctx.default_temperature if slot.temperature is None else slot.temperature
            req = ChatRequest(
                model=slot.model,
                messages=msgs,
                temperature=temp,
                max_tokens=ctx.max_tokens,
                seed=_seed_for(ctx.seed, spec.config_id, question.question_id, layer),
                sample_index=slot.sample_index,
            )
            key = (
                question.dataset,
                question.question_id,
                slot.model,
                slot.sample_index,
                spec.config_id,
                "proposer",
                layer,
                None,
            )
            fields = {
                "role": "proposer",
                "layer": layer,
                "config_id": spec.config_id,
                "config": spec.to_json(),
                "step": None,
                "prompt_id": agg.prompt_id,
                "n_references": len(shown),
                "shown": json.dumps(shown),
                "n_think_stripped": n_think,
            }
            return await ctx.once(key, lambda: _generate(ctx, question, req, fields))

        layer_rows = await asyncio.gather(*(one(spec.proposers[i]) for i in order))
        all_rows.extend(layer_rows)
        bad = [r for r in layer_rows if r["status"] != "ok"]
        if bad and (ctx.on_proposer_error == "fail" or len(bad) == len(layer_rows)):
            err = f"layer {layer} proposer(s) failed: {', '.join(_tag(r) for r in bad)}"
            row = _failed_row(question, spec, assert_model, 0, [_tag(r) for r in layer_rows], err)
            if ctx.existing(row_key(row)) is None:
                ctx.save([row])
            return MoAResult(final=row, rows=(*all_rows, row))
        rows = [r for r in layer_rows if r["status"] == "ok"]

    async def aggregate(
        step: int, items: Sequence[str], shown: Sequence[str], n_think: int, is_final: bool
    ) -> dict[str, Any]:
        if style == "usc":
            msgs: tuple[Mapping[str, str], ...] = (
                {"role": "user", "content": prompts.usc_user_prompt(question.question, items)},
            )
        else:
            msgs = tuple(prompts.inject_references(base_messages, items, style=style))
        req = ChatRequest(
            model=assert_model,
            messages=msgs,
            temperature=agg.temperature,
            max_tokens=ctx.max_tokens,
            seed=_seed_for(ctx.seed, spec.config_id, question.question_id, "agg", step),
            sample_index=0,
        )
        fields = _agg_fields(spec, step, is_final, shown) | {"n_think_stripped": n_think}
        key = _agg_key(question, spec, assert_model, step)
        row = await ctx.once(key, lambda: _generate(ctx, question, req, fields))
        if style == "usc" and row["status"] == "ok" and "usc_choice" not in row:
            row = _usc_pick(row, rows)
        return row

    if spec.method == "self_moa_seq":
        w, k = int(spec.window or 0), int(spec.repeats or 0)
        windows = seq_windows(len(rows), w, k) if len(rows) >= w else [list(range(len(rows)))]
        synthesis: dict[str, Any] | None = None
        for step, positions in enumerate(windows):
            new = [rows[i] for i in positions]
            refs, n_think = refs_of(new)
            shown = [_tag(r) for r in new]
            if synthesis is not None:
                syn_text = strip_think(synthesis["output"])[0]
                copies, ctag = [syn_text] * k, [f"synthesis@{step - 1}"] * k
                if ctx.copies_first:
                    refs, shown = copies + refs, ctag + shown
                else:
                    refs, shown = refs + copies, shown + ctag
            synthesis = await aggregate(step, refs, shown, n_think, step == len(windows) - 1)
            all_rows.append(synthesis)
            if synthesis["status"] != "ok":
                break
        if synthesis is None:
            raise ConfigError("self_moa_seq: no window to aggregate.")
        if not synthesis.get("is_final"):
            synthesis = synthesis | {"is_final": True}
        return MoAResult(final=synthesis, rows=tuple(all_rows))
    refs, n_think = refs_of(rows)
    final = await aggregate(0, refs, [_tag(r) for r in rows], n_think, True)
    return MoAResult(final=final, rows=(*all_rows, final))


_USC_RE = None


def _usc_pick(row: dict[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Replace a USC row's answer with that of the response it selected (recorded)."""
    import re

    m = re.search(r"Response\s+(\d+)", strip_think(row["output"])[0])
    i = int(m.group(1)) - 1 if m else -1
    if not 0 <= i < len(rows):
        return row | {"usc_choice": None}
    chosen = rows[i]
    return row | {
        "usc_choice": i + 1,
        "answer": chosen["answer"],
        "answer_key": chosen["answer_key"],
        "correct": chosen["correct"],
    }


def _llm_agg(aggregator: AggregatorSpec | str, prompt_style: str) -> AggregatorSpec:
    if isinstance(aggregator, AggregatorSpec):
        return aggregator
    pid = {"moa": "moa-v1", "zeroeval": "moa-zeroeval-v1", "usc": "usc-ours-v1"}.get(prompt_style)
    if pid is None:
        raise ConfigError(
            f"prompt_style: expected 'moa', 'zeroeval' or 'usc'; got {prompt_style!r}."
        )
    return AggregatorSpec(kind="llm", model=aggregator, prompt_id=pid, temperature=0.7)


async def mixed_moa(
    question: Question,
    *,
    proposers: Sequence[ProposerSlot | str],
    aggregator: AggregatorSpec | str,
    client: ChatClient,
    layers: int = 1,
    prompt_style: str = "moa",
    **kwargs: Any,
) -> MoAResult:
    """Mixed-MoA: different proposer models, then an aggregator (``layers`` proposer layers).

    ``proposers`` are slots or model names (a name repeated takes samples 0, 1, …).
    ``aggregator`` is a spec or a model name (then ``prompt_style`` picks the prompt:
    ``"moa"``, ``"zeroeval"`` or ``"usc"``, the latter being Universal Self-Consistency).
    Other keyword arguments go to :func:`run_config`.
    """
    slots: list[ProposerSlot] = []
    seen: Counter[str] = Counter()
    for p in proposers:
        if isinstance(p, str):
            slots.append(ProposerSlot(model=p, sample_index=seen[p]))
            seen[p] += 1
        else:
            slots.append(p)
    spec = ConfigSpec(
        method="mixed_moa",
        proposers=tuple(slots),
        aggregator=_llm_agg(aggregator, prompt_style),
        layers=layers,
    )
    return await run_config(question, spec, client=client, **kwargs)


async def self_moa(
    question: Question,
    *,
    model: str,
    n_samples: int = 6,
    aggregator: AggregatorSpec | str,
    client: ChatClient,
    temperature: float = DEFAULT_TEMPERATURE,
    prompt_style: str = "moa",
    **kwargs: Any,
) -> MoAResult:
    """Self-MoA: ``n_samples`` samples of one model at ``temperature``, then an aggregator."""
    spec = ConfigSpec(
        method="self_moa",
        proposers=tuple(
            ProposerSlot(model=model, sample_index=k, temperature=temperature)
            for k in range(n_samples)
        ),
        aggregator=_llm_agg(aggregator, prompt_style),
    )
    return await run_config(question, spec, client=client, **kwargs)


async def self_moa_seq(
    question: Question,
    *,
    model: str,
    n_samples: int,
    window: int = 6,
    repeats: int = 3,
    aggregator: AggregatorSpec | str,
    client: ChatClient,
    temperature: float = DEFAULT_TEMPERATURE,
    prompt_style: str = "moa",
    **kwargs: Any,
) -> MoAResult:
    """Self-MoA-Seq: sliding-window aggregation of ``n_samples`` samples (see :func:`seq_windows`).

    Aggregator calls: ``1 + ceil((n_samples - window) / (window - repeats))``.
    """
    spec = ConfigSpec(
        method="self_moa_seq",
        proposers=tuple(
            ProposerSlot(model=model, sample_index=k, temperature=temperature)
            for k in range(n_samples)
        ),
        aggregator=_llm_agg(aggregator, prompt_style),
        window=window,
        repeats=repeats,
    )
    return await run_config(question, spec, client=client, **kwargs)


async def usc(
    question: Question,
    *,
    proposers: Sequence[ProposerSlot | str],
    aggregator: str,
    client: ChatClient,
    **kwargs: Any,
) -> MoAResult:
    """Universal Self-Consistency: the aggregator picks the most consistent response.

    The prompt is ours (the paper's USC prompt was not published)."""
    return await mixed_moa(
        question,
        proposers=proposers,
        aggregator=aggregator,
        client=client,
        prompt_style="usc",
        **kwargs,
    )


async def run_experiment(
    questions: Sequence[Question],
    configs: Sequence[ConfigSpec],
    *,
    client: ChatClient,
    store: RunStore,
    seed: int = 0,
    progress: bool = True,
    max_tokens: int = 2048,
    on_proposer_error: str = "fail",
    judge_model: str | None = None,
    copies_first: bool = True,
    tie_break: str = "expected",
    default_temperature: float = DEFAULT_TEMPERATURE,
    tasks: Mapping[str, Task] | None = None,
    pool_only: bool = False,
) -> RunSummary:
    """Run every configuration on every question, resuming from ``store``.

    First the shared proposer pool (every (question, model, sample) any configuration names,
    concurrently, several samples of one prompt per ``complete_n`` call when the client has
    it), then the aggregator calls. Keys already ``ok`` in the store are never asked again;
    error rows are retried. A :class:`ProviderError` that outlives the client's retries becomes
    an error row; any other exception propagates.

    Parameters
    ----------
    questions, configs
        What to run.
    client
        A chat client (wrap backends in :class:`~qdanalysis.runner.llm.managed.ManagedClient`).
    store
        The run store (resume source and sink).
    seed
        Run seed (request seeds and aggregator shuffles).
    progress
        Show a tqdm bar on stderr.
    pool_only
        Stop after the proposer pool (e.g. to measure sample lengths for :func:`choose_window`).
    max_tokens, on_proposer_error, judge_model, copies_first, tie_break, default_temperature
        See :func:`run_config`.
    tasks
        Extra (custom) tasks by name.

    Returns
    -------
    RunSummary

    Raises
    ------
    ConfigError
        If two configurations give one (model, sample) different temperatures.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    ctx = _Context(
        client=client,
        store=store,
        seed=seed,
        max_tokens=max_tokens,
        on_proposer_error=on_proposer_error,
        judge_model=judge_model,
        tasks=tasks,
        copies_first=copies_first,
        default_temperature=default_temperature,
    )
    for q in questions:
        ctx.task(q)
    temps: dict[tuple[str, int], float] = {}
    for spec in configs:
        for s in spec.proposers:
            t = default_temperature if s.temperature is None else s.temperature
            if temps.setdefault((s.model, s.sample_index), t) != t:
                raise ConfigError(
                    f"configs: sample {s.sample_index} of {s.model!r} has two temperatures "
                    f"({temps[(s.model, s.sample_index)]} and {t}); a pool sample is generated "
                    "once. Give different temperatures different sample indices."
                )
    by_model: dict[str, list[int]] = {}
    for m, k in sorted(temps):
        by_model.setdefault(m, []).append(k)
    n_pool = len(questions) * len(temps)
    n_agg = 0 if pool_only else len(questions) * len(configs)
    bar = tqdm(total=n_pool + n_agg, disable=not progress, desc="run", unit="row", leave=False)
    ctx.on_row = lambda r: (
        bar.update(1) if r.get("role") == "proposer" and r.get("layer") == 0 else None
    )
    done_before = sum(
        1 for q in questions for (m, k) in temps if ctx.existing(_pool_key(q, m, k)) is not None
    )
    bar.update(done_before)
    try:
        jobs: list[Awaitable[None]] = []
        for q in questions:
            for m, ks in by_model.items():
                groups: dict[float, list[int]] = {}
                for k in ks:
                    groups.setdefault(temps[(m, k)], []).append(k)
                jobs.extend(_pool_batch(ctx, q, m, t, g) for t, g in groups.items())
        await asyncio.gather(*jobs)
        n_failed = 0
        if not pool_only:

            async def one(q: Question, spec: ConfigSpec) -> MoAResult:
                res = await run_config(q, spec, client=client, _ctx=ctx)
                bar.update(1)
                return res

            results = await asyncio.gather(*(one(q, s) for s in configs for q in questions))
            n_failed = sum(r.final.get("status") != "ok" for r in results)
    finally:
        bar.close()
    return RunSummary(
        n_rows=len(store.done_keys()),
        n_new_rows=ctx.n_new,
        n_errors=ctx.n_errors,
        n_calls=ctx.n_calls,
        n_cache_hits=ctx.n_cache_hits,
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=ctx.completion_tokens,
        elapsed_s=time.perf_counter() - t0,
        n_failed_configs=n_failed,
    )


def method_configs(
    method: str,
    *,
    proposers: Sequence[str],
    aggregator: str | None,
    n_samples: int = 6,
    temperature: float = DEFAULT_TEMPERATURE,
    aggregator_temperature: float = 0.7,
    layers: int = 1,
    window: int = 6,
    repeats: int = 3,
    prompt_style: str = "moa",
) -> list[ConfigSpec]:
    """Configurations for one CLI ``--method`` (see :mod:`qdanalysis.run`).

    * ``mixed_moa``: the listed proposer models (a repeated name takes samples 0, 1, …);
    * ``self_moa`` / ``self_moa_seq``: ``n_samples`` samples of each listed model, one config each;
    * ``single``: sample 0 of each listed model, one config each;
    * ``plurality``: plurality vote over ``n_samples`` samples of each model and over the mixed
      slots when several models are listed;
    * ``usc``: Universal Self-Consistency over ``n_samples`` samples of each model.

    Examples
    --------
    >>> [c.method for c in method_configs("single", proposers=["a", "b"], aggregator=None)]
    ['single', 'single']
    """

    def agg(style: str = prompt_style) -> AggregatorSpec:
        if aggregator is None:
            raise ConfigError(f"--method {method}: expected --aggregator MODEL; got none.")
        spec = _llm_agg(aggregator, style)
        return dataclasses.replace(spec, temperature=aggregator_temperature)

    def samples(m: str) -> tuple[ProposerSlot, ...]:
        return tuple(
            ProposerSlot(model=m, sample_index=k, temperature=temperature) for k in range(n_samples)
        )

    if not proposers:
        raise ConfigError(f"--method {method}: expected --proposers m1,m2,...; got none.")
    if method == "mixed_moa":
        seen: Counter[str] = Counter()
        slots = []
        for p in proposers:
            slots.append(ProposerSlot(model=p, sample_index=seen[p], temperature=temperature))
            seen[p] += 1
        return [
            ConfigSpec(method="mixed_moa", proposers=tuple(slots), aggregator=agg(), layers=layers)
        ]
    if method == "self_moa":
        return [
            ConfigSpec(method="self_moa", proposers=samples(m), aggregator=agg())
            for m in dict.fromkeys(proposers)
        ]
    if method == "self_moa_seq":
        return [
            ConfigSpec(
                method="self_moa_seq",
                proposers=samples(m),
                aggregator=agg(),
                window=window,
                repeats=repeats,
            )
            for m in dict.fromkeys(proposers)
        ]
    if method == "single":
        return [
            ConfigSpec(
                method="single",
                proposers=(ProposerSlot(model=m, sample_index=0, temperature=temperature),),
            )
            for m in dict.fromkeys(proposers)
        ]
    if method == "plurality":
        out = [
            ConfigSpec(method="self_moa", proposers=samples(m)) for m in dict.fromkeys(proposers)
        ]
        if len(set(proposers)) > 1:
            seen = Counter()
            slots = []
            for p in proposers:
                slots.append(ProposerSlot(model=p, sample_index=seen[p], temperature=temperature))
                seen[p] += 1
            out.append(ConfigSpec(method="mixed_moa", proposers=tuple(slots)))
        return out
    if method == "usc":
        return [
            ConfigSpec(method="self_moa", proposers=samples(m), aggregator=agg("usc"))
            for m in dict.fromkeys(proposers)
        ]
    raise ConfigError(
        "--method: expected one of mixed_moa, self_moa, self_moa_seq, single, plurality, usc; "
        f"got {method!r}."
    )


__all__ += ["method_configs"]
_ = (math, _USC_RE)


def method_label(spec: ConfigSpec) -> str:
    """A short human label of a configuration, e.g. ``self_moa[smollm2x6]/llm:smollm2``.

    Examples
    --------
    >>> c = method_configs("single", proposers=["m"], aggregator=None)[0]
    >>> method_label(c)
    'single[mx1]'
    """
    counts = Counter(s.model for s in spec.proposers)
    who = "+".join(f"{m}x{n}" for m, n in counts.items())
    base = f"{spec.method}[{who}]"
    if spec.method == "self_moa_seq":
        base += f"(w={spec.window},k={spec.repeats})"
    if spec.method == "single" and spec.n_proposers == 1:
        return base
    agg = spec.aggregator
    if agg.kind == "llm":
        suffix = "" if agg.prompt_id == "moa-v1" else f"({agg.prompt_id})"
        return f"{base}/llm:{agg.model}{suffix}"
    return f"{base}/{agg.kind}"


def method_accuracy(outputs: Any) -> Any:
    """Per-configuration accuracy and cost of a run's outputs table.

    Parameters
    ----------
    outputs
        The run's rows: a pandas DataFrame (e.g. :func:`qdanalysis.outputs.load_outputs`) or
        a path to ``outputs.jsonl``. Only ``status == "ok"`` rows count.

    Returns
    -------
    pandas.DataFrame
        One row per ``config_id``: ``method``, ``label`` (:func:`method_label`), ``config_id``,
        ``n_questions`` (questions with a final aggregator row), ``accuracy`` (mean of the
        final aggregator rows' ``correct``; an unextracted answer counts as wrong),
        ``proposer_tokens`` and ``aggregator_tokens`` (mean completion tokens per question of
        the configuration's proposer samples and of all its aggregator steps), ``tokens``
        (their sum), ``aggregator_latency_s`` (mean per question, all steps). Sorted by
        accuracy, best first. Proposer samples are shared between configurations, so the
        per-configuration tokens are what the method would cost run alone.
    """
    import pandas as pd

    df = pd.read_json(outputs, lines=True) if not isinstance(outputs, pd.DataFrame) else outputs
    if "status" in df.columns:
        df = df[df["status"].isna() | (df["status"] == "ok")]
    cols = [
        "method",
        "label",
        "config_id",
        "n_questions",
        "accuracy",
        "proposer_tokens",
        "aggregator_tokens",
        "tokens",
        "aggregator_latency_s",
    ]
    agg = df[df["role"] == "aggregator"]
    if agg.empty:
        return pd.DataFrame(columns=cols)
    prop = df[(df["role"] == "proposer") & (df["layer"].fillna(0) == 0)]
    ptok = {
        (r.dataset, r.question_id, r.model, int(r.sample_index)): float(r.completion_tokens or 0)
        for r in prop.itertuples()
    }
    out = []
    for cid, rows in agg.groupby("config_id", sort=False):
        spec = ConfigSpec.from_json(rows["config"].iloc[0])
        final = rows[rows["is_final"].fillna(False).astype(bool)]
        qs = list(dict.fromkeys(zip(final["dataset"], final["question_id"], strict=True)))
        p_tokens = [
            sum(ptok.get((d, qid, s.model, s.sample_index), 0.0) for s in spec.proposers)
            for d, qid in qs
        ]
        per_q = rows.groupby(["dataset", "question_id"])
        a_tokens = per_q["completion_tokens"].sum(min_count=1).fillna(0)
        a_lat = per_q["latency_s"].sum(min_count=1).fillna(0)
        n = len(qs)
        p_mean = sum(p_tokens) / n if n else float("nan")
        a_mean = float(a_tokens.mean()) if n else float("nan")
        out.append(
            {
                "method": spec.method,
                "label": method_label(spec),
                "config_id": cid,
                "n_questions": n,
                "accuracy": (
                    float(final["correct"].fillna(0).astype(float).mean()) if n else float("nan")
                ),
                "proposer_tokens": p_mean,
                "aggregator_tokens": a_mean,
                "tokens": p_mean + a_mean,
                "aggregator_latency_s": float(a_lat.mean()) if n else float("nan"),
            }
        )
    res = pd.DataFrame(out, columns=cols)
    return res.sort_values(["accuracy", "label"], ascending=[False, True]).reset_index(drop=True)


__all__ += ["method_accuracy", "method_label"]
