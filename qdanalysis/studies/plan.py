"""A study's plan: its configurations, run options and endpoints, and a dry-run estimate.

:func:`study_configs` turns the ``[design]`` of a :class:`~qdanalysis.studies.spec.StudySpec`
into :class:`~qdanalysis.configs.ConfigSpec` objects: generated Self-MoA and Mixed-MoA
configurations (:func:`qdanalysis.configs.generate_configs` over the pool's samples), the
Self-MoA-Seq ones, each with every aggregator, and the offline baselines (each model alone,
plurality votes over the generated slots). :func:`estimate_calls` counts what a run would ask,
per model and role, leaving out rows already stored: exact call counts, estimated tokens.

Neighbours: :mod:`qdanalysis.studies.spec` (the spec), :mod:`qdanalysis.studies.orchestrate`
(runs the plan).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..configs import (
    AggregatorSpec,
    ConfigSpec,
    ProposerSlot,
    count_config_space,
    generate_configs,
)
from ..errors import ConfigError
from ..runner import prompts
from ..runner.llm.backends import EndpointSpec
from ..runner.moa import aggregator_key, aggregator_model, pool_key
from ..runner.options import RunOptions
from ..runner.store import RunStore
from ..runner.tasks import TASKS, Question
from ..runner.windows import seq_windows
from .spec import StudySpec

__all__ = [
    "CHARS_PER_TOKEN",
    "endpoint_specs",
    "estimate_calls",
    "fit_config_ids",
    "run_options",
    "study_configs",
]

#: Characters per token of the dry run's prompt estimate (a rough English average).
CHARS_PER_TOKEN = 4.0
#: Above this many configurations the space is not enumerated for composition filters.
_ENUMERATE_LIMIT = 200_000


def run_options(spec: StudySpec) -> RunOptions:
    """The :class:`~qdanalysis.runner.options.RunOptions` of a study (one per study)."""
    agg = spec.aggregation
    return RunOptions(
        top_p=spec.top_p,
        max_tokens=spec.proposers.max_tokens,
        aggregator_max_tokens=agg.max_tokens,
        stop=spec.stop,
        seed=spec.seed,
        on_proposer_error=agg.on_error,
        min_references=agg.min_references,
        copies_first=agg.copies_first,
        concurrency=spec.concurrency,
        timeout_s=max(spec.proposers.timeout_s, agg.timeout_s),
    )


def endpoint_specs(spec: StudySpec) -> dict[str, EndpointSpec]:
    """Model name -> endpoint (HTTP timeouts: the longer of the two roles')."""
    timeout = max(spec.proposers.timeout_s, spec.aggregation.timeout_s)
    return {name: m.endpoint(timeout_s=timeout) for name, m in spec.models.items()}


def _temperatures(spec: StudySpec) -> dict[str, tuple[float, ...]]:
    default = RunOptions().temperature
    out = {}
    for p in spec.proposers.pool:
        model_t = spec.models[p.model].temperature
        out[p.model] = p.temperatures(default if model_t is None else model_t)
    return out


def _with_temperatures(cfg: ConfigSpec, temps: Mapping[str, Sequence[float]]) -> ConfigSpec:
    slots = tuple(
        ProposerSlot(
            model=s.model, sample_index=s.sample_index, temperature=temps[s.model][s.sample_index]
        )
        for s in cfg.proposers
    )
    return dataclasses.replace(cfg, proposers=slots)


def _composition(cfg: ConfigSpec) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in cfg.types:
        counts[t] = counts.get(t, 0) + 1
    return counts


def _generated(spec: StudySpec) -> list[ConfigSpec]:
    """The Self-/Mixed-MoA slot draws of the design (plurality-vote specs; ids by draw)."""
    d = spec.design
    if d.max_configs == 0 or not d.methods:
        return []
    samples = {p.model: range(p.samples) for p in spec.proposers.pool}
    frame = pd.DataFrame(
        [(m, k) for m, ks in samples.items() for k in ks], columns=["proposer", "sample_index"]
    )
    kwargs: dict[str, Any] = {"n_proposers": d.n, "seed": d.seed}
    kwargs["with_replacement"] = d.with_replacement
    filtered = bool(d.compositions) or set(d.methods) != {"self_moa", "mixed_moa"}
    space = count_config_space(samples, d.n, with_replacement=d.with_replacement)
    if filtered and space > _ENUMERATE_LIMIT:
        raise ConfigError(
            f"design: expected a configuration space of at most {_ENUMERATE_LIMIT} to filter by "
            f"methods or compositions; got {space}. Use fewer samples or drop the filters."
        )
    try:
        cfgs = generate_configs(frame, max_configs=space if filtered else d.max_configs, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"design: {exc} (n, [[proposers.pool]] samples)") from exc
    cfgs = [c for c in cfgs if c.method in d.methods]
    if d.compositions:
        wanted = [dict(c) for c in d.compositions]
        cfgs = [c for c in cfgs if _composition(c) in wanted]
    if len(cfgs) > d.max_configs:
        keep = np.random.default_rng(d.seed).choice(len(cfgs), d.max_configs, replace=False)
        cfgs = [cfgs[i] for i in sorted(keep)]
    return cfgs


def _llm(agg: Any) -> AggregatorSpec:
    return AggregatorSpec(
        kind="llm", model=agg.model, prompt_id=agg.prompt_id, temperature=agg.temperature
    )


def study_configs(spec: StudySpec) -> list[ConfigSpec]:
    """Every configuration of a study, de-duplicated by id, in a stable order.

    Generated draws run with each aggregator; Self-MoA-Seq entries give one configuration per
    aggregator over samples ``0 .. samples-1``; baselines: ``single`` (sample 0 of each pool
    model), ``plurality_vote`` and ``oracle`` (offline, over each generated draw's slots).
    Every slot carries its pool sample's temperature.

    Raises
    ------
    ConfigError
        If the design leaves no configuration, or the space is too small for it.
    """
    temps = _temperatures(spec)
    draws = [_with_temperatures(c, temps) for c in _generated(spec)]
    aggs = [_llm(a) for a in spec.aggregation.aggregators]
    out = [dataclasses.replace(c, aggregator=a) for a in aggs for c in draws]
    for s in spec.design.self_moa_seq:
        slots = tuple(
            ProposerSlot(model=s.model, sample_index=k, temperature=temps[s.model][k])
            for k in range(s.samples)
        )
        for a in aggs:
            out.append(
                ConfigSpec(
                    method="self_moa_seq",
                    proposers=slots,
                    aggregator=a,
                    window=s.window,
                    repeats=s.repeats,
                )
            )
    base = spec.design.baselines
    if "single" in base:
        for p in spec.proposers.pool:
            slot = ProposerSlot(model=p.model, sample_index=0, temperature=temps[p.model][0])
            out.append(ConfigSpec(method="single", proposers=(slot,)))
    for kind in ("plurality_vote", "oracle"):
        if kind in base:
            out += [dataclasses.replace(c, aggregator=AggregatorSpec(kind=kind)) for c in draws]
    if not out:
        raise ConfigError("design: expected at least one configuration; the design gives none.")
    return list({c.config_id: c for c in out}.values())


def fit_config_ids(spec: StudySpec, configs: Sequence[ConfigSpec]) -> set[str]:
    """The configurations the regression fits: LLM-aggregated, with ``design.n`` slots."""
    return {
        c.config_id
        for c in configs
        if c.aggregator.kind == "llm" and c.method != "single" and c.n_proposers == spec.design.n
    }


def _tokens(messages: Sequence[Mapping[str, str]]) -> int:
    return math.ceil(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN)


def _steps(cfg: ConfigSpec) -> int:
    """Aggregator calls of one configuration on one question."""
    if cfg.method == "self_moa_seq":
        return len(seq_windows(cfg.n_proposers, int(cfg.window or 0), int(cfg.repeats or 0)))
    return 1


def _agg_prompt_tokens(q: Question, cfg: ConfigSpec, ref_tokens: float) -> int:
    """The aggregator prompt: the template over placeholder references, plus their length."""
    style = {"moa-v1": "moa", "moa-zeroeval-v1": "zeroeval", "usc-ours-v1": "usc"}
    st = style[cfg.aggregator.prompt_id]
    shown = cfg.n_proposers if cfg.method != "self_moa_seq" else int(cfg.window or 0)
    refs = [""] * shown
    if st == "usc":
        msgs: Sequence[Mapping[str, str]] = (
            {"role": "user", "content": prompts.usc_user_prompt(q.question, refs)},
        )
    else:
        msgs = prompts.inject_references(TASKS[q.task].messages(q), refs, style=st)
    return _tokens(msgs) + math.ceil(shown * ref_tokens)


def estimate_calls(
    spec: StudySpec,
    questions: Sequence[Question],
    configs: Sequence[ConfigSpec],
    *,
    store: RunStore | None = None,
) -> pd.DataFrame:
    """What a run of the plan would ask, per model and role, before anything is asked.

    Calls are exact: one per proposer sample (the pool is shared, so a sample named by many
    configurations counts once), per intermediate-layer slot and per aggregator step (Self-MoA-
    Seq: one per window), minus the rows ``store`` already holds with ``status="ok"`` (a
    resumed run asks only the rest). A batched backend may draw several samples of one prompt
    in one HTTP request; the count is of completions. Tokens are estimates: prompt tokens from
    the prompts' characters (:data:`CHARS_PER_TOKEN`; aggregator prompts hold references of
    ``max_tokens`` each, or of the stored proposer rows' mean length), completion tokens the
    ``max_tokens`` limit (an upper bound).

    Returns
    -------
    pandas.DataFrame
        ``model, role, calls, prompt_tokens_est, completion_tokens_max``, sorted.
    """
    done = store.done_keys() if store is not None else set()
    stored = store.rows() if store is not None else []
    lengths = [r.get("completion_tokens") or 0 for r in stored if r.get("role") == "proposer"]
    ref_tokens = float(np.mean(lengths)) if lengths else float(spec.proposers.max_tokens)
    rows: list[tuple[str, str, int, int]] = []
    pool = {(s.model, s.sample_index) for c in configs for s in c.proposers}
    for q in questions:
        prompt = _tokens(TASKS[q.task].messages(q))
        for m, k in sorted(pool):
            if pool_key(q, m, k) not in done:
                rows.append((m, "proposer", prompt, spec.proposers.max_tokens))
        for c in configs:
            if c.aggregator.kind != "llm" or c.method == "single":
                continue
            model = aggregator_model(c)
            for step in range(_steps(c)):
                if aggregator_key(q, c, model, step) not in done:
                    tokens = _agg_prompt_tokens(q, c, ref_tokens)
                    rows.append((model, "aggregator", tokens, spec.aggregation.max_tokens))
    df = pd.DataFrame(rows, columns=["model", "role", "prompt_tokens_est", "completion_tokens_max"])
    out = (
        df.groupby(["model", "role"], sort=True)
        .agg(
            calls=("model", "size"),
            prompt_tokens_est=("prompt_tokens_est", "sum"),
            completion_tokens_max=("completion_tokens_max", "sum"),
        )
        .reset_index()
    )
    return out.astype(
        {"calls": "int64", "prompt_tokens_est": "int64", "completion_tokens_max": "int64"}
    )
