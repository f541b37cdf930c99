"""Mixture-of-Agents runners: Mixed-MoA, Self-MoA, Self-MoA-Seq, baselines, whole experiments.

Every call becomes one row of the outputs table (built by :func:`qdanalysis.schema.output_row`):

* **proposer rows** (``role="proposer"``, ``layer=0``, ``config_id=None``): sample ``k`` of model
  ``m`` for a question is generated once and shared by every configuration naming ``(m, k)``;
* **intermediate rows** (Mixed-MoA with ``layers > 1``): ``role="proposer"``, ``layer >= 1``,
  ``config_id`` set;
* **aggregator rows** (``role="aggregator"``): ``config_id``, ``config`` (the spec's JSON),
  ``layer`` = number of proposer layers, ``step`` (0, or 0, 1, … for Self-MoA-Seq windows),
  ``is_final``, ``n_references`` and ``shown`` (JSON list of what the aggregator saw, in
  order). Offline baselines (plurality vote, oracle, single model) also write one aggregator row,
  without a call, so performance is always the final aggregator row's ``correct``.

Rows made by a call record ``request_key`` (the response cache's key of the request) and
``request`` (its settings); a stored row is reused only for the same request (see
:class:`~qdanalysis.runner.engine.Engine`). How a run calls and grades is one
:class:`~qdanalysis.runner.options.RunOptions`, passed whole.

The aggregator sees the proposers in a seeded shuffle (slots are stored sorted); Self-MoA-Seq
consumes samples in slot order. ``<think>…</think>`` traces are stripped from references
(``n_think_stripped`` records how many). A proposer that fails after the client's retries is an
``status="error"`` row; ``on_proposer_error="fail"`` (default) then marks the configuration
failed for that question (an aggregator error row, retried on resume), ``"skip"`` runs it with
the remaining references (``n_references`` says how many were shown).

Neighbours: :mod:`qdanalysis.runner.tasks` prompts and grades; :mod:`qdanalysis.runner.llm` makes
the calls (wrap backends in :class:`~qdanalysis.runner.llm.managed.ManagedClient` for retries,
caching and the concurrency cap); :mod:`qdanalysis.runner.store` keeps rows;
:mod:`qdanalysis.run` is the CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..configs import AggregatorSpec, ConfigSpec, ProposerSlot
from ..errors import ConfigError, ProviderError
from ..schema import output_row
from ..votes import answer_codes, plurality_vote_scores, plurality_winners
from . import prompts
from .answers import strip_think
from .engine import Engine, question_fields, seed_for
from .llm.base import ChatClient, ChatResponse, contiguous_runs
from .options import RunOptions
from .store import RowKey, RunStore
from .tasks import Question, Task
from .windows import choose_window, seq_windows

__all__ = [
    "DEFAULT_N_SAMPLES",
    "DEFAULT_REPEATS",
    "DEFAULT_WINDOW",
    "PROMPT_STYLES",
    "MoAResult",
    "RunSummary",
    "aggregator_key",
    "aggregator_model",
    "choose_window",
    "method_configs",
    "mixed_moa",
    "plurality_vote",
    "pool_key",
    "run_config",
    "run_experiment",
    "self_moa",
    "self_moa_seq",
    "seq_windows",
    "usc",
]

#: Aggregator prompt ids and how each is assembled.
PROMPT_STYLES: Mapping[str, str] = {
    "moa-v1": "moa",
    "moa-zeroeval-v1": "zeroeval",
    "usc-ours-v1": "usc",
}
_PROMPT_IDS = {style: pid for pid, style in PROMPT_STYLES.items()}
DEFAULT_N_SAMPLES = 6
"""Samples per model of the Self-MoA methods (the paper's six slots)."""
DEFAULT_WINDOW = 6
"""Self-MoA-Seq window w (the paper gives none; recorded in every configuration)."""
DEFAULT_REPEATS = 3
"""Self-MoA-Seq copies k of the synthesis (the paper gives none; recorded likewise)."""


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
    options: RunOptions = field(default_factory=RunOptions)
    """The options of the run."""
    error_counts: Mapping[str, int] = field(default_factory=dict)
    """Error rows of this run by ``"<role> <model>"``."""
    first_error: str | None = None
    """The ``error`` message of the first error row of this run."""

    @property
    def all_failed(self) -> bool:
        """Every row this run wrote is an error (e.g. the server answered nothing)."""
        return self.n_errors > 0 and self.n_errors == self.n_new_rows

    def __str__(self) -> str:
        return (
            f"rows {self.n_rows} (new {self.n_new_rows}), errors {self.n_errors}, calls "
            f"{self.n_calls} (cache hits {self.n_cache_hits}), tokens {self.prompt_tokens} prompt"
            f" + {self.completion_tokens} completion, failed configurations "
            f"{self.n_failed_configs}, time {self.elapsed_s:.1f} s"
        )


# -- keys and field groups --------------------------------------------------------------------
def _pool_key(q: Question, model: str, k: int) -> RowKey:
    return (q.dataset, q.question_id, model, k, None, "proposer", 0, None)


def _agg_key(q: Question, spec: ConfigSpec, model: str, step: int) -> RowKey:
    return (q.dataset, q.question_id, model, 0, spec.config_id, "aggregator", spec.layers, step)


def _layer_key(q: Question, spec: ConfigSpec, slot: ProposerSlot, layer: int) -> RowKey:
    return (
        *(q.dataset, q.question_id, slot.model, slot.sample_index),
        *(spec.config_id, "proposer", layer, None),
    )


def _proposer_fields(task: Task) -> dict[str, Any]:
    return {"role": "proposer", "layer": 0, "prompt_id": task.prompt_id}


def _config_fields(spec: ConfigSpec, shown: Sequence[str], n_think: int) -> dict[str, Any]:
    return {
        "config_id": spec.config_id,
        "config": spec.to_json(),
        "n_references": len(shown),
        "shown": json.dumps(list(shown)),
        "n_think_stripped": n_think,
    }


def _agg_fields(
    spec: ConfigSpec, step: int, is_final: bool, shown: Sequence[str], n_think: int = 0
) -> dict[str, Any]:
    return _config_fields(spec, shown, n_think) | {
        "role": "aggregator",
        "layer": spec.layers,
        "step": step,
        "is_final": is_final,
        "prompt_id": spec.aggregator.prompt_id if spec.aggregator.kind == "llm" else None,
    }


def _tag(row: Mapping[str, Any]) -> str:
    layer = row.get("layer") or 0
    base = f"{row['model']}#{row['sample_index']}"
    return base if layer == 0 else f"L{layer}:{base}"


def _aggregator_model(spec: ConfigSpec) -> str:
    """The ``model`` of a configuration's aggregator rows."""
    if spec.method == "single":
        return spec.proposers[0].model
    agg = spec.aggregator
    return str(agg.model) if agg.kind == "llm" else agg.kind


# -- the proposer pool ------------------------------------------------------------------------
def _proposer_request(
    eng: Engine, q: Question, model: str, k: int, temperature: float | None
) -> Any:
    return eng.request(
        model=model,
        messages=eng.task(q).messages(q),
        temperature=temperature,
        seed=seed_for(eng.options.seed, q.dataset, q.question_id, model),
        sample_index=k,
    )


async def _pool_row(eng: Engine, q: Question, slot: ProposerSlot) -> dict[str, Any]:
    req = _proposer_request(eng, q, slot.model, slot.sample_index, slot.temperature)
    fields = _proposer_fields(eng.task(q))
    return await eng.call_row(q, _pool_key(q, slot.model, slot.sample_index), req, fields)


async def _pool_batch(
    eng: Engine, q: Question, model: str, temperature: float, indices: Sequence[int]
) -> None:
    """Draw contiguous samples of one (question, model) with ``complete_n`` when available."""
    missing = [k for k in indices if eng.existing(_pool_key(q, model, k)) is None]
    complete_n = getattr(eng.client, "complete_n", None)
    fields = _proposer_fields(eng.task(q))
    if callable(complete_n) and len(missing) > 1:
        for run in contiguous_runs(missing):
            req = _proposer_request(eng, q, model, run[0], temperature)
            try:
                resps: list[ChatResponse] = await complete_n(req, len(run))
            except ProviderError:
                break  # fall back to one call per sample: exact error rows per sample
            for k, resp in zip(run, resps, strict=True):
                eng.book(resp)
                r = dataclasses.replace(req, sample_index=k)
                await eng.call_row(q, _pool_key(q, model, k), r, fields, resp)
    slots = [ProposerSlot(model=model, sample_index=k, temperature=temperature) for k in missing]
    await asyncio.gather(*(_pool_row(eng, q, s) for s in slots))


def _pool_temperatures(
    configs: Sequence[ConfigSpec], options: RunOptions
) -> dict[tuple[str, int], float]:
    """(model, sample) -> temperature over all configurations; one temperature per sample."""
    temps: dict[tuple[str, int], float] = {}
    for spec in configs:
        for s in spec.proposers:
            t = options.temperature if s.temperature is None else s.temperature
            if temps.setdefault((s.model, s.sample_index), t) != t:
                raise ConfigError(
                    f"configs: sample {s.sample_index} of {s.model!r} has two temperatures "
                    f"({temps[(s.model, s.sample_index)]} and {t}); a pool sample is generated "
                    "once. Give different temperatures different sample indices."
                )
    return temps


def _pool_jobs(
    eng: Engine, questions: Sequence[Question], temps: Mapping[tuple[str, int], float]
) -> list[Awaitable[None]]:
    groups: dict[tuple[str, float], list[int]] = {}
    for (m, k), t in sorted(temps.items()):
        groups.setdefault((m, t), []).append(k)
    return [_pool_batch(eng, q, m, t, ks) for q in questions for (m, t), ks in groups.items()]


# -- offline aggregators ----------------------------------------------------------------------
def plurality_vote(
    rows: Sequence[Mapping[str, Any]], *, tie_break: str = "expected", seed: int = 0
) -> tuple[str | None, str | None, float]:
    """Most common ``answer_key`` among rows; null keys never win (:mod:`qdanalysis.votes`).

    Parameters
    ----------
    rows
        Graded rows (``answer``, ``answer_key``, ``correct``).
    tie_break
        ``"expected"`` (default): the score is the mean ``correct`` of the tied keys, i.e. the
        expected accuracy of a uniform pick (the analysis side's rule, the same kernel); the
        answer lists the tied answers joined by ``" | "`` and the key is None when several tie.
        ``"seeded"``: one tied key picked with ``random.Random(seed)``.
    seed
        Seed of the ``"seeded"`` pick.

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
    if tie_break not in ("expected", "seeded"):
        raise ConfigError(f"tie_break: expected 'expected' or 'seeded'; got {tie_break!r}.")
    keys = [r.get("answer_key") for r in rows]
    codes = answer_codes(keys)[None, :]
    if not (codes >= 0).any():
        return None, None, 0.0
    winners = plurality_winners(codes)[0]
    first = {str(keys[i]): rows[i] for i in reversed(range(len(rows))) if winners[i]}
    tied = sorted(first)
    if len(tied) == 1 or tie_break == "seeded":
        k = tied[0] if len(tied) == 1 else random.Random(seed).choice(tied)
        return first[k].get("answer"), k, float(first[k]["correct"])
    correct = [
        float(r["correct"]) if k is not None else 0.0 for r, k in zip(rows, keys, strict=True)
    ]
    score = float(plurality_vote_scores(codes, [correct])[0])
    return " | ".join(str(first[k].get("answer")) for k in tied), None, score


def _offline_result(
    spec: ConfigSpec, rows: Sequence[Mapping[str, Any]], options: RunOptions
) -> dict[str, Any]:
    """The result columns of an offline aggregator row: single, plurality vote or oracle."""
    kind = "single" if spec.method == "single" else spec.aggregator.kind
    if kind == "single":
        r = rows[0]
        ans, key, corr, out = r["answer"], r["answer_key"], float(r["correct"]), r["output"]
    elif kind == "plurality_vote":
        ans, key, corr = plurality_vote(rows, tie_break=options.tie_break, seed=options.seed)
        out = ans or ""
    else:
        best = max(rows, key=lambda r: float(r["correct"]))
        ans, key, corr = best["answer"], best["answer_key"], float(best["correct"])
        out = ans or ""
    return {"output": out, "answer": ans, "answer_key": key, "correct": corr}


def _offline_row(
    eng: Engine, q: Question, spec: ConfigSpec, rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    model = _aggregator_model(spec)

    def make() -> dict[str, Any]:
        shown = [_tag(r) for r in rows]
        return output_row(
            question_fields(q) | {"model": model, "sample_index": 0},
            **_agg_fields(spec, 0, True, shown),
            **_offline_result(spec, rows, eng.options),
            prompt_tokens=0,
            completion_tokens=0,
            latency_s=0.0,
            status="ok",
        )

    return eng.offline_row(_agg_key(q, spec, model, 0), make)


def _failed_row(
    eng: Engine, q: Question, spec: ConfigSpec, shown: Sequence[Mapping[str, Any]], what: str
) -> dict[str, Any]:
    """The final aggregator error row of a configuration whose references failed."""
    model = _aggregator_model(spec)
    bad = [_tag(r) for r in shown if r["status"] != "ok"]

    def make() -> dict[str, Any]:
        return output_row(
            question_fields(q) | {"model": model, "sample_index": 0},
            **_agg_fields(spec, 0, True, [_tag(r) for r in shown]),
            status="error",
            error=f"{what} failed: {', '.join(bad)}",
        )

    return eng.offline_row(_agg_key(q, spec, model, 0), make)


def _must_fail(eng: Engine, rows: Sequence[Mapping[str, Any]]) -> bool:
    bad = sum(r["status"] != "ok" for r in rows)
    fewest = eng.options.min_references or 1
    return bad > 0 and (eng.options.on_proposer_error == "fail" or len(rows) - bad < fewest)


# -- LLM aggregation --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    """What one configuration's LLM steps share for one question."""

    eng: Engine
    q: Question
    spec: ConfigSpec
    style: str


def _references(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], int]:
    stripped = [strip_think(r["output"]) for r in rows]
    return [s for s, _ in stripped], sum(int(w) for _, w in stripped)


def _style(agg: AggregatorSpec) -> str:
    if agg.prompt_id not in PROMPT_STYLES:
        raise ConfigError(
            f"AggregatorSpec.prompt_id: expected one of {sorted(PROMPT_STYLES)}; got "
            f"{agg.prompt_id!r}."
        )
    return PROMPT_STYLES[agg.prompt_id]


async def _layer(
    c: _Call, layer: int, rows: Sequence[Mapping[str, Any]], order: Sequence[int]
) -> list[dict[str, Any]]:
    """Intermediate layer (Mixed-MoA depth): each slot's model reruns on the previous layer."""
    refs, n_think = _references(rows)
    shown = [_tag(r) for r in rows]
    base = c.eng.task(c.q).messages(c.q)
    msgs = prompts.inject_references(base, refs, style=c.style)
    fields = _config_fields(c.spec, shown, n_think) | {
        "role": "proposer",
        "layer": layer,
        "prompt_id": c.spec.aggregator.prompt_id,
    }

    async def one(slot: ProposerSlot) -> dict[str, Any]:
        req = c.eng.request(
            model=slot.model,
            messages=msgs,
            temperature=slot.temperature,
            seed=seed_for(c.eng.options.seed, c.spec.config_id, c.q.question_id, layer),
            sample_index=slot.sample_index,
        )
        return await c.eng.call_row(c.q, _layer_key(c.q, c.spec, slot, layer), req, fields)

    return list(await asyncio.gather(*(one(c.spec.proposers[i]) for i in order)))


async def _aggregate(
    c: _Call,
    step: int,
    refs: Sequence[str],
    shown: Sequence[str],
    n_think: int,
    *,
    is_final: bool,
    shown_rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """One aggregator call over ``refs`` (a USC row takes the answer of the one it picks)."""
    if c.style == "usc":
        content = prompts.usc_user_prompt(c.q.question, refs)
        msgs: Sequence[Mapping[str, str]] = ({"role": "user", "content": content},)
    else:
        msgs = prompts.inject_references(c.eng.task(c.q).messages(c.q), refs, style=c.style)
    model = _aggregator_model(c.spec)
    req = c.eng.request(
        model=model,
        messages=msgs,
        temperature=c.spec.aggregator.temperature,
        seed=seed_for(c.eng.options.seed, c.spec.config_id, c.q.question_id, "agg", step),
        max_tokens=c.eng.options.aggregator_max_tokens,
    )
    fields = _agg_fields(c.spec, step, is_final, shown, n_think)
    pick = (lambda row: _usc_pick(row, shown_rows)) if c.style == "usc" else None
    key = _agg_key(c.q, c.spec, model, step)
    return await c.eng.call_row(c.q, key, req, fields, finish=pick)


async def _sequential(c: _Call, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Self-MoA-Seq: one aggregator row per window; the last is final."""
    w, k = int(c.spec.window or 0), int(c.spec.repeats or 0)
    windows = seq_windows(len(rows), w, k) if len(rows) >= w else [list(range(len(rows)))]
    steps: list[dict[str, Any]] = []
    for step, positions in enumerate(windows):
        new = [rows[i] for i in positions]
        refs, n_think = _references(new)
        shown = [_tag(r) for r in new]
        if steps:
            copies = [strip_think(steps[-1]["output"])[0]] * k
            tags = [f"synthesis@{step - 1}"] * k
            first = c.eng.options.copies_first
            refs, shown = (copies + refs, tags + shown) if first else (refs + copies, shown + tags)
        last = step == len(windows) - 1
        steps.append(await _aggregate(c, step, refs, shown, n_think, is_final=last, shown_rows=new))
        if steps[-1]["status"] != "ok":
            break
    if not steps[-1].get("is_final"):
        steps[-1] = steps[-1] | {"is_final": True}
    return steps


def _usc_pick(row: dict[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Replace a USC row's answer with that of the response it selected (recorded)."""
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


def _order(eng: Engine, spec: ConfigSpec, q: Question) -> list[int]:
    idx = list(range(spec.n_proposers))
    if spec.method != "self_moa_seq":
        random.Random(seed_for(eng.options.seed, spec.config_id, q.dataset, q.question_id)).shuffle(
            idx
        )
    return idx


async def _llm_result(
    c: _Call, pool: Sequence[dict[str, Any]], rows: list[dict[str, Any]], order: Sequence[int]
) -> MoAResult:
    """Intermediate layers, then the aggregator step(s) of an LLM-aggregated configuration."""
    involved = list(pool)
    for layer in range(1, c.spec.layers):
        layer_rows = await _layer(c, layer, rows, order)
        involved.extend(layer_rows)
        if _must_fail(c.eng, layer_rows):
            row = _failed_row(c.eng, c.q, c.spec, layer_rows, f"layer {layer} proposer(s)")
            return MoAResult(final=row, rows=(*involved, row))
        rows = [r for r in layer_rows if r["status"] == "ok"]
    if c.spec.method == "self_moa_seq":
        steps = await _sequential(c, rows)
    else:
        refs, n_think = _references(rows)
        shown = [_tag(r) for r in rows]
        steps = [await _aggregate(c, 0, refs, shown, n_think, is_final=True, shown_rows=rows)]
    return MoAResult(final=steps[-1], rows=(*involved, *steps))


async def run_config(
    question: Question,
    spec: ConfigSpec,
    *,
    client: ChatClient,
    store: RunStore | None = None,
    options: RunOptions | None = None,
    tasks: Mapping[str, Task] | None = None,
    _engine: Engine | None = None,
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
    options
        How to call, grade and aggregate (:class:`RunOptions`; its defaults when None).
    tasks
        Extra (custom) tasks by name.

    Returns
    -------
    MoAResult

    Raises
    ------
    ConfigError
        If ``store`` holds rows made with other settings, the spec cannot run (a ``single``
        method with several slots, an unknown prompt id), or a task is unknown.
    """
    eng = _engine or Engine(
        client=client, store=store, options=options or RunOptions(), tasks=tasks
    )
    eng.task(question)
    if spec.method == "single" and spec.n_proposers != 1:
        raise ConfigError(
            f"ConfigSpec method 'single': expected one proposer slot; got {spec.n_proposers}."
        )
    style = _style(spec.aggregator) if spec.aggregator.kind == "llm" else "offline"
    pool = list(await asyncio.gather(*(_pool_row(eng, question, s) for s in spec.proposers)))
    order = _order(eng, spec, question)
    rows = [pool[i] for i in order]
    if _must_fail(eng, rows):
        final = _failed_row(eng, question, spec, rows, "proposer(s)")
        return MoAResult(final=final, rows=(*pool, final))
    rows = [r for r in rows if r["status"] == "ok"]
    if spec.method == "single" or style == "offline":
        final = _offline_row(eng, question, spec, rows)
        return MoAResult(final=final, rows=(*pool, final))
    return await _llm_result(_Call(eng, question, spec, style), pool, rows, order)


def _llm_agg(aggregator: AggregatorSpec | str, prompt_style: str) -> AggregatorSpec:
    """An aggregator spec from a model name (the spec's own defaults) or the spec itself."""
    if isinstance(aggregator, AggregatorSpec):
        return aggregator
    pid = _PROMPT_IDS.get(prompt_style)
    if pid is None:
        raise ConfigError(
            f"prompt_style: expected 'moa', 'zeroeval' or 'usc'; got {prompt_style!r}."
        )
    return AggregatorSpec(kind="llm", model=aggregator, prompt_id=pid)


def _named_slots(
    proposers: Sequence[ProposerSlot | str], temperature: float | None = None
) -> tuple[ProposerSlot, ...]:
    """Slots from slots or model names (a name repeated takes samples 0, 1, …)."""
    seen: Counter[str] = Counter()
    slots: list[ProposerSlot] = []
    for p in proposers:
        if isinstance(p, str):
            slots.append(ProposerSlot(model=p, sample_index=seen[p], temperature=temperature))
            seen[p] += 1
        else:
            slots.append(p)
    return tuple(slots)


def _samples(model: str, n: int, temperature: float | None) -> tuple[ProposerSlot, ...]:
    return tuple(
        ProposerSlot(model=model, sample_index=k, temperature=temperature) for k in range(n)
    )


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
    ``"moa"``, ``"zeroeval"`` or ``"usc"``, the latter being Universal Self-Consistency, and
    the other fields take :class:`~qdanalysis.configs.AggregatorSpec`'s defaults).
    Other keyword arguments (``store``, ``options``, ``tasks``) go to :func:`run_config`.
    """
    spec = ConfigSpec(
        method="mixed_moa",
        proposers=_named_slots(proposers),
        aggregator=_llm_agg(aggregator, prompt_style),
        layers=layers,
    )
    return await run_config(question, spec, client=client, **kwargs)


async def self_moa(
    question: Question,
    *,
    model: str,
    n_samples: int = DEFAULT_N_SAMPLES,
    aggregator: AggregatorSpec | str,
    client: ChatClient,
    temperature: float | None = None,
    prompt_style: str = "moa",
    **kwargs: Any,
) -> MoAResult:
    """Self-MoA: ``n_samples`` samples of one model, then an aggregator.

    ``temperature`` None samples at the run's ``options.temperature``; ``aggregator`` as in
    :func:`mixed_moa`.
    """
    spec = ConfigSpec(
        method="self_moa",
        proposers=_samples(model, n_samples, temperature),
        aggregator=_llm_agg(aggregator, prompt_style),
    )
    return await run_config(question, spec, client=client, **kwargs)


async def self_moa_seq(
    question: Question,
    *,
    model: str,
    n_samples: int,
    window: int = DEFAULT_WINDOW,
    repeats: int = DEFAULT_REPEATS,
    aggregator: AggregatorSpec | str,
    client: ChatClient,
    temperature: float | None = None,
    prompt_style: str = "moa",
    **kwargs: Any,
) -> MoAResult:
    """Self-MoA-Seq: sliding-window aggregation of ``n_samples`` samples (see :func:`seq_windows`).

    Aggregator calls: ``1 + ceil((n_samples - window) / (window - repeats))``.
    """
    spec = ConfigSpec(
        method="self_moa_seq",
        proposers=_samples(model, n_samples, temperature),
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


def _summary(eng: Engine, store: RunStore, t0: float, n_failed: int) -> RunSummary:
    errors = [r for r in eng.new_rows if r["status"] == "error"]
    return RunSummary(
        n_rows=len(store.done_keys()),
        n_new_rows=len(eng.new_rows),
        n_errors=len(errors),
        n_calls=eng.n_calls,
        n_cache_hits=eng.n_cache_hits,
        prompt_tokens=eng.prompt_tokens,
        completion_tokens=eng.completion_tokens,
        elapsed_s=time.perf_counter() - t0,
        n_failed_configs=n_failed,
        options=eng.options,
        error_counts=dict(Counter(f"{r['role']} {r['model']}" for r in errors)),
        first_error=errors[0]["error"] if errors else None,
    )


async def _run_configs(
    eng: Engine,
    questions: Sequence[Question],
    configs: Sequence[ConfigSpec],
    *,
    tick: Callable[[], object],
) -> int:
    """Run every configuration on every question (``tick`` after each); the number that failed."""

    async def one(q: Question, spec: ConfigSpec) -> MoAResult:
        res = await run_config(q, spec, client=eng.client, _engine=eng)
        tick()
        return res

    results = await asyncio.gather(*(one(q, s) for s in configs for q in questions))
    return sum(r.final["status"] != "ok" for r in results)


async def run_experiment(
    questions: Sequence[Question],
    configs: Sequence[ConfigSpec],
    *,
    client: ChatClient,
    store: RunStore,
    options: RunOptions | None = None,
    tasks: Mapping[str, Task] | None = None,
    progress: bool = True,
    pool_only: bool = False,
    aggregator_client: ChatClient | None = None,
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
        The run store (resume source and sink); claimed for this run's settings.
    options
        How to call, grade and aggregate (:class:`RunOptions`; its defaults when None).
    tasks
        Extra (custom) tasks by name.
    progress
        Show a tqdm bar on stderr.
    pool_only
        Stop after the proposer pool (e.g. to measure sample lengths for :func:`choose_window`).
    aggregator_client
        The client of aggregator calls (own timeout, ledger); None: ``client``.

    Returns
    -------
    RunSummary

    Raises
    ------
    ConfigError
        If ``store`` holds rows made with other settings (naming each), or two configurations
        give one (model, sample) different temperatures.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    options = options or RunOptions()
    temps = _pool_temperatures(configs, options)
    eng = Engine(client=client, store=store, options=options, tasks=tasks)
    eng.aggregator_client = aggregator_client or client
    for q in questions:
        eng.task(q)
    n_agg = 0 if pool_only else len(questions) * len(configs)
    bar = tqdm(
        total=len(questions) * len(temps) + n_agg,
        disable=not progress,
        desc="run",
        unit="row",
        leave=False,
    )
    eng.on_row = lambda r: bar.update(1) if r["role"] == "proposer" and r["layer"] == 0 else None
    bar.update(
        sum(eng.existing(_pool_key(q, m, k)) is not None for q in questions for m, k in temps)
    )
    try:
        await asyncio.gather(*_pool_jobs(eng, questions, temps))
        n_failed = 0
        if not pool_only:
            n_failed = await _run_configs(eng, questions, configs, tick=lambda: bar.update(1))
    finally:
        bar.close()
    return _summary(eng, store, t0, n_failed)


#: Methods of :func:`method_configs` (``python -m qdanalysis.run --method``).
CLI_METHODS = ("mixed_moa", "self_moa", "self_moa_seq", "single", "plurality", "usc")


def method_configs(
    method: str,
    *,
    proposers: Sequence[str],
    aggregator: str | None,
    n_samples: int = DEFAULT_N_SAMPLES,
    temperature: float | None = None,
    aggregator_temperature: float | None = None,
    layers: int = 1,
    window: int = DEFAULT_WINDOW,
    repeats: int = DEFAULT_REPEATS,
    prompt_style: str = "moa",
) -> list[ConfigSpec]:
    """Configurations of one named method over the listed proposer models.

    * ``mixed_moa``: the listed proposer models (a repeated name takes samples 0, 1, …);
    * ``self_moa`` / ``self_moa_seq``: ``n_samples`` samples of each listed model, one config each;
    * ``single``: sample 0 of each listed model, one config each;
    * ``plurality``: plurality vote over ``n_samples`` samples of each model and over the mixed
      slots when several models are listed;
    * ``usc``: Universal Self-Consistency over ``n_samples`` samples of each model.

    ``temperature`` None leaves the slots without one (the run's ``options.temperature``);
    ``aggregator_temperature`` None takes :class:`~qdanalysis.configs.AggregatorSpec`'s default.

    Examples
    --------
    >>> [c.method for c in method_configs("single", proposers=["a", "b"], aggregator=None)]
    ['single', 'single']
    """
    if not proposers:
        raise ConfigError(f"method_configs({method!r}): expected proposers; got none.")
    models = list(dict.fromkeys(proposers))

    def agg(style: str = prompt_style) -> AggregatorSpec:
        if aggregator is None:
            raise ConfigError(
                f"method_configs({method!r}): expected an aggregator model; got None."
            )
        spec = _llm_agg(aggregator, style)
        if aggregator_temperature is None:
            return spec
        return dataclasses.replace(spec, temperature=aggregator_temperature)

    def samples(m: str) -> tuple[ProposerSlot, ...]:
        return _samples(m, n_samples, temperature)

    mixed = _named_slots(proposers, temperature)
    build: dict[str, Callable[[], list[ConfigSpec]]] = {
        "mixed_moa": lambda: [
            ConfigSpec(method="mixed_moa", proposers=mixed, aggregator=agg(), layers=layers)
        ],
        "self_moa": lambda: [
            ConfigSpec(method="self_moa", proposers=samples(m), aggregator=agg()) for m in models
        ],
        "self_moa_seq": lambda: [
            ConfigSpec(
                method="self_moa_seq",
                proposers=samples(m),
                aggregator=agg(),
                window=window,
                repeats=repeats,
            )
            for m in models
        ],
        "single": lambda: [
            ConfigSpec(method="single", proposers=_samples(m, 1, temperature)) for m in models
        ],
        "plurality": lambda: (
            [ConfigSpec(method="self_moa", proposers=samples(m)) for m in models]
            + ([ConfigSpec(method="mixed_moa", proposers=mixed)] if len(models) > 1 else [])
        ),
        "usc": lambda: [
            ConfigSpec(method="self_moa", proposers=samples(m), aggregator=agg("usc"))
            for m in models
        ],
    }
    if method not in build:
        raise ConfigError(f"method_configs: expected one of {list(CLI_METHODS)}; got {method!r}.")
    return build[method]()


__all__ += ["CLI_METHODS"]

#: Public names of the store keys and aggregator model of a configuration's rows (a study's
#: dry run counts what a run would ask with them).
pool_key = _pool_key
aggregator_key = _agg_key
aggregator_model = _aggregator_model
