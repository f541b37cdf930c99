"""Run a whole study: shared proposer pool, every aggregator call, the fit, tables, figures.

:func:`run_study` takes a :class:`~qdanalysis.studies.spec.StudySpec` (see
:func:`~qdanalysis.studies.spec.load_study`) and, in order:

1. loads the questions and builds the configurations (:mod:`qdanalysis.studies.plan`) and the
   dry-run estimate of calls and tokens per model and role (the rows already stored left out);
   with ``dry_run=True`` it stops there, having written nothing;
2. builds one chat client over every model's own endpoint
   (:func:`~qdanalysis.runner.llm.backends.build_router`) and two managed clients over it, one
   per role, each with its own timeout and usage ledger; checks every endpoint answers;
3. runs :func:`~qdanalysis.runner.moa.run_experiment` into ``OUT/store`` (append-only,
   resumable: a rerun asks no stored request again) with a response cache in
   ``OUT/cache.sqlite``, then writes ``OUT/outputs.jsonl``;
4. when no call failed, fits the LLM-aggregated configurations of ``design.n`` slots
   (:func:`~qdanalysis.analysis.pipeline.analyze` with aggregator ``"llm"``) and writes the
   fit's tables and figures to ``OUT/fit`` (:mod:`qdanalysis.analysis.artifacts`, the same
   writer as ``python -m qdanalysis.fit``), every configuration's accuracy side by side
   (``run_methods.csv``: Self-MoA, Mixed-MoA, Self-MoA-Seq and the baselines), this
   invocation's usage (``usage.csv``), and with ``report`` the HTML report.

Neighbours: ``python -m qdanalysis.study`` is its CLI; it sits above both sides and is the one
place that imports the runner and the analysis together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_write
from ..configs import ConfigSpec
from ..runner.llm.backends import EndpointSpec, build_router
from ..runner.llm.base import ping
from ..runner.moa import RunSummary, run_experiment
from ..runner.store import RunStore
from ..runner.tasks import Question, load_questions
from .plan import endpoint_specs, estimate_calls, fit_config_ids, run_options, study_configs
from .spec import StudySpec

__all__ = ["ROLES", "StudyResult", "run_study", "study_questions"]

#: The roles a study's calls are booked under.
ROLES = ("proposer", "aggregator")
_USAGE = (
    "calls",
    "samples",
    "backend_calls",
    "cache_hits",
    "errors",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
)


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """What :func:`run_study` did."""

    spec: StudySpec
    n_questions: int
    n_configs: int
    estimate: pd.DataFrame
    """The dry-run estimate: ``model, role, calls, prompt_tokens_est, completion_tokens_max``
    (made before anything was asked; stored rows left out)."""
    dry_run: bool = False
    summary: RunSummary | None = None
    """The run's summary (None for a dry run)."""
    usage: pd.DataFrame = field(default_factory=pd.DataFrame)
    """This invocation's calls per ``model, role`` from the usage ledgers: ``calls`` (logical
    calls, cache hits included; one may draw several samples of a prompt), ``samples``
    (completions returned, what the estimate's ``calls`` count), ``backend_calls``,
    ``cache_hits``, ``errors``, ``retries``, ``prompt_tokens``, ``completion_tokens``,
    ``latency_s`` (summed), ``mean_latency_s``."""
    analysis: Any = None
    """The :class:`~qdanalysis.analysis.pipeline.Analysis` (None when not fitted)."""
    written: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    """Warnings the fit raised (shown on the report)."""
    fit_skipped: str | None = None
    """Why the fit was not run, when it was not."""

    @property
    def n_failed(self) -> int:
        """Error rows written plus failed (configuration, question) pairs of this run."""
        s = self.summary
        return 0 if s is None else s.n_errors + s.n_failed_configs


def study_questions(spec: StudySpec) -> list[Question]:
    """Every question of the study, file by file."""
    t = spec.task
    return [q for f in t.questions for q in load_questions(f, task=t.task, limit=t.limit)]


def _mock(spec: EndpointSpec) -> Any:
    from ..testing.mock import MockClient

    return MockClient(**dict(spec.options))


def _usage(ledgers: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for role, ledger in ledgers.items():
        for model, t in ledger.summary()["by_model"].items():
            n = t["backend_calls"]
            mean = t["latency_s"] / n if n else None
            rows.append(
                {"model": model, "role": role, **{k: t[k] for k in _USAGE}}
                | {"mean_latency_s": mean}
            )
    cols = ["model", "role", *_USAGE, "mean_latency_s"]
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "role"]).reset_index(drop=True)


def _write_record(spec: StudySpec, out: Path, configs: Sequence[ConfigSpec]) -> list[Path]:
    """The study's settings and configurations beside its rows (before anything is asked)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if spec.source is not None and Path(spec.source).resolve() != (out / "study.toml").resolve():
        shutil.copyfile(spec.source, out / "study.toml")
        written.append(out / "study.toml")
    with atomic_write(out / "study.json", encoding="utf-8") as fh:
        json.dump(spec.to_dict(), fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    with atomic_write(out / "configs.jsonl", encoding="utf-8") as fh:
        fh.writelines(c.to_json() + "\n" for c in configs)
    return [*written, out / "study.json", out / "configs.jsonl"]


async def _execute(
    spec: StudySpec,
    questions: Sequence[Question],
    configs: Sequence[ConfigSpec],
    store: RunStore,
    progress: bool,
) -> tuple[RunSummary, pd.DataFrame]:
    """Every call of the study: one router over the models' endpoints, a client per role."""
    from ..runner.llm.cache import ResponseCache
    from ..runner.llm.ledger import UsageLedger
    from ..runner.llm.managed import ManagedClient

    router = build_router(endpoint_specs(spec), factories={"mock": _mock})
    cache = ResponseCache(Path(spec.out) / "cache.sqlite") if spec.cache else None
    timeouts = {"proposer": spec.proposers.timeout_s, "aggregator": spec.aggregation.timeout_s}
    ledgers = {role: UsageLedger(keep_records=False) for role in ROLES}
    clients = {
        role: ManagedClient(
            router,
            cache=cache,
            max_concurrency=spec.concurrency,
            timeout_s=timeouts[role],
            ledger=ledgers[role],
            seed=spec.seed,
        )
        for role in ROLES
    }
    try:
        await ping(router)
        summary = await run_experiment(
            questions,
            configs,
            client=clients["proposer"],
            aggregator_client=clients["aggregator"],
            store=store,
            options=run_options(spec),
            progress=progress,
        )
    finally:
        await router.aclose()
        if cache is not None:
            cache.close()
    return summary, _usage(ledgers)


def _fit(
    spec: StudySpec,
    outputs_path: Path,
    configs: Sequence[ConfigSpec],
    usage: pd.DataFrame,
    *,
    progress: bool,
    argv: Sequence[str] | None,
) -> tuple[Any, list[Path], list[str]]:
    """Fit the LLM-aggregated configurations; write tables, figures and the report."""
    from ..analysis.artifacts import analyze_with_tables, save_fit
    from ..analysis.export import Provenance, save_table
    from ..analysis.methods import run_method_table
    from ..analysis.pipeline import AnalysisSpec
    from ..outputs import load_outputs

    a = spec.analysis
    outputs = load_outputs([outputs_path])
    keep = fit_config_ids(spec, configs)
    rows = outputs[outputs["config_id"].isna() | outputs["config_id"].isin(keep)]
    aspec = AnalysisSpec(**dict(a.spec), aggregator="llm", n_proposers=spec.design.n)
    res, tables, notes = analyze_with_tables(
        rows,
        aspec,
        cache=a.cache_dir or True,
        progress=progress,
        bootstrap=a.bootstrap,
        bootstrap_seed=a.bootstrap_seed,
        sensitivity=a.sensitivity,
    )
    params = dict(res.parameters) | {"study": spec.name, "study_seed": spec.seed}
    if tables["_boot"] is not None:
        params["bootstrap"] = tables["_boot"].parameters
    inputs: list[str | Path] = [outputs_path, *([spec.source] if spec.source else [])]
    prov = Provenance(inputs=inputs, parameters=params, argv=argv)
    fit_dir = Path(spec.out) / "fit"
    written = save_fit(res, tables, fit_dir, prov, formats=a.formats, figures=a.figures)
    written += save_table(
        run_method_table(outputs), "run_methods", out_dir=fit_dir, provenance=prov
    )
    written += save_table(usage, "usage", out_dir=fit_dir, provenance=prov)
    if a.report:
        from ..analysis.report import write_report

        page = write_report(fit_dir, outputs=[outputs_path], warnings=notes, argv=argv)
        written += [page, page.with_suffix(".json")]
    return res, written, notes


def _log_usage(out: Path, usage: pd.DataFrame, summary: RunSummary) -> Path:
    """Append this invocation's usage to ``OUT/usage.jsonl`` (one line per invocation)."""
    line = {
        "finished_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": str(summary),
        "n_errors": summary.n_errors,
        "usage": json.loads(usage.to_json(orient="records")),
    }
    path = out / "usage.jsonl"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
    return path


def run_study(
    spec: StudySpec,
    *,
    dry_run: bool = False,
    progress: bool = True,
    report: bool | None = None,
    argv: Sequence[str] | None = None,
) -> StudyResult:
    """Run (or resume) a whole study; see the module docstring for the steps and files.

    Parameters
    ----------
    spec
        The study (:func:`~qdanalysis.studies.spec.load_study`).
    dry_run
        Only plan and estimate: nothing is asked or written.
    progress
        Progress bars on stderr.
    report
        Write the HTML report (None: the spec's ``analysis.report``).
    argv
        The command line, recorded in the sidecars.

    Returns
    -------
    StudyResult
        Its ``n_failed`` is nonzero when calls failed (rerun to retry them; no fit then).

    Raises
    ------
    ConfigError, DataError
        Bad questions, a design that gives no configuration, a store made with other
        settings, before any call.
    ProviderError
        An endpoint that does not answer, before any generation.
    """
    if report is not None and report != spec.analysis.report:
        spec = _with_report(spec, report)
    questions = study_questions(spec)
    configs = study_configs(spec)
    out = Path(spec.out)
    store_dir = out / "store"
    store = RunStore(store_dir) if store_dir.exists() or not dry_run else None
    estimate = estimate_calls(spec, questions, configs, store=store)
    base = StudyResult(
        spec=spec, n_questions=len(questions), n_configs=len(configs), estimate=estimate
    )
    if dry_run or store is None:
        return dataclasses.replace(base, dry_run=True)
    written = _write_record(spec, out, configs)
    summary, usage = asyncio.run(_execute(spec, questions, configs, store, progress))
    written.append(store.write_outputs(out / "outputs.jsonl"))
    written.append(_log_usage(out, usage, summary))
    res, notes, skipped = None, list[str](), None
    if summary.n_errors or summary.n_failed_configs:
        skipped = "some calls failed; rerun the study to retry them (the fit runs once all succeed)"
    else:
        res, more, notes = _fit(
            spec, out / "outputs.jsonl", configs, usage, progress=progress, argv=argv
        )
        written += more
    return dataclasses.replace(
        base,
        summary=summary,
        usage=usage,
        analysis=res,
        written=tuple(written),
        warnings=tuple(notes),
        fit_skipped=skipped,
    )


def _with_report(spec: StudySpec, report: bool) -> StudySpec:
    return dataclasses.replace(spec, analysis=dataclasses.replace(spec.analysis, report=report))
