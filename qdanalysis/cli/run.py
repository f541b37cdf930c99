"""CLI: run MoA methods or a list of configurations over a question file into a run store.

``python -m qdanalysis.run --questions Q.jsonl --method self_moa --proposers M --aggregator M
--backend hf --model-path DIR --out runs/x`` generates the shared proposer pool, then the
aggregator calls, appending every row to ``runs/x/rows.jsonl``; at the end it writes the outputs
table ``runs/x/outputs.jsonl`` (ok rows only, atomically). Rerunning the same command resumes: rows
already stored are not asked again, error rows are retried. The flags become one
:class:`~qdanalysis.runner.options.RunOptions`, recorded in ``runs/x/run.json``; a rerun with other
settings into the same ``--out`` stops before generating and names them. Each endpoint is checked
before generation; the exit code says whether calls failed (see ``--help``).

Neighbours: :mod:`qdanalysis.runner.moa` does the work; ``python -m qdanalysis.fit --outputs
runs/x/outputs.jsonl`` analyses the result.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..configs import DEFAULT_AGGREGATOR_TEMPERATURE, ConfigSpec
from ..errors import AuthError, ConfigError, DataError, ProviderError
from ..runner.engine import run_identity
from ..runner.llm.backends import EndpointSpec, build_router, parse_endpoint
from ..runner.llm.base import ping
from ..runner.llm.router import ModelRouter
from ..runner.moa import (
    CLI_METHODS,
    DEFAULT_N_SAMPLES,
    DEFAULT_REPEATS,
    DEFAULT_WINDOW,
    RunSummary,
    choose_window,
    method_configs,
    run_experiment,
)
from ..runner.options import ON_PROPOSER_ERROR, TIE_BREAKS, RunOptions
from ..runner.store import RunStore
from ..runner.tasks import Question, load_questions
from ._common import base_parser, run_main

__all__ = [
    "EXIT_ALL_FAILED",
    "EXIT_SOME_FAILED",
    "ModelRouter",
    "build_parser",
    "endpoint_specs",
    "main",
    "make_backend",
]

METHODS = CLI_METHODS
#: Exit code when some calls failed (error rows stored; rerun the command to retry them).
EXIT_SOME_FAILED = 3
#: Exit code when every row this run wrote is an error (e.g. the server answers nothing).
EXIT_ALL_FAILED = 4
_EPILOG = (
    "exit codes: 0 every call answered; 1 error before generating (bad input, an endpoint that "
    "does not answer, a store made with other settings); 2 usage; "
    f"{EXIT_SOME_FAILED} some calls failed (stored as error rows; rerun to retry them); "
    f"{EXIT_ALL_FAILED} every call failed; 130 interrupted."
)
_D = RunOptions.default


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` documents every option)."""
    p = base_parser(
        "python -m qdanalysis.run",
        "Run Mixture-of-Agents methods or configurations over questions. Rows go to "
        "OUT/rows.jsonl (append-only, resumable); the outputs table to OUT/outputs.jsonl. "
        "Rerun the same command to resume; a rerun with other settings into the same OUT "
        "stops with an error naming them.",
    )
    p.epilog = _EPILOG
    g = p.add_argument_group("inputs")
    g.add_argument(
        "--questions",
        required=True,
        type=Path,
        help="JSONL question file (dataset, question_id, question, reference, ...)",
    )
    g.add_argument(
        "--task",
        default=None,
        help="task of questions without a 'task' field: multiple_choice, math, crux, open",
    )
    g.add_argument("--limit", type=int, default=None, help="only the first N questions")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--method", choices=METHODS, help="run one method (see --proposers etc.)")
    what.add_argument(
        "--configs",
        type=Path,
        help="JSONL (one ConfigSpec JSON per line) or CSV with a 'config' column",
    )
    g = p.add_argument_group("method")
    g.add_argument(
        "--proposers",
        default="",
        help="comma-separated proposer models; for mixed_moa a repeated name takes "
        "samples 0, 1, ...; for self_moa/self_moa_seq/single/usc one config per model",
    )
    g.add_argument("--aggregator", default=None, help="aggregator model (LLM methods)")
    g.add_argument(
        "--n-samples", type=int, default=DEFAULT_N_SAMPLES, help="samples per model (self methods)"
    )
    g.add_argument(
        "--window",
        default=str(DEFAULT_WINDOW),
        help="Self-MoA-Seq window w, or 'auto' (largest that fits --context-length, "
        "from measured sample lengths; see qdanalysis.runner.moa.choose_window)",
    )
    g.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="Self-MoA-Seq copies k of the synthesis",
    )
    g.add_argument(
        "--copies-last",
        action="store_true",
        help="Self-MoA-Seq: put the synthesis copies after the new samples",
    )
    g.add_argument("--context-length", type=int, default=None, help="aggregator context (tokens)")
    g.add_argument("--layers", type=int, default=1, help="Mixed-MoA proposer layers")
    g.add_argument(
        "--temperature", type=float, default=_D("temperature"), help="proposer temperature"
    )
    g.add_argument("--top-p", type=float, default=_D("top_p"), help="nucleus mass of every call")
    g.add_argument(
        "--stop", action="append", default=[], help="stop string of every call (repeatable)"
    )
    g.add_argument(
        "--aggregator-temperature",
        type=float,
        default=DEFAULT_AGGREGATOR_TEMPERATURE,
        help="aggregator temperature (0.7: MoA default, an assumption for MMLU/CRUX/MATH)",
    )
    g.add_argument(
        "--prompt-style",
        choices=("moa", "zeroeval"),
        default="moa",
        help="aggregate-and-synthesize assembly (togethercomputer/MoA or ZeroEval fork)",
    )
    g.add_argument(
        "--on-proposer-error",
        choices=ON_PROPOSER_ERROR,
        default=_D("on_proposer_error"),
        help="a proposer failed after retries: mark the configuration failed, or "
        "aggregate the remaining references (recorded in n_references)",
    )
    g.add_argument(
        "--tie-break",
        choices=TIE_BREAKS,
        default=_D("tie_break"),
        help="plurality ties: expected accuracy of a uniform pick, or a seeded pick",
    )
    g.add_argument("--judge-model", default=None, help="judge model for open-ended tasks")
    g = p.add_argument_group("backend")
    g.add_argument(
        "--backend",
        choices=("openai", "hf", "vllm", "mock"),
        default="openai",
        help="openai: OpenAI-compatible HTTP; hf: local transformers; vllm: offline "
        "vLLM; mock: deterministic fake (plumbing checks)",
    )
    g.add_argument("--base-url", default=None, help="OpenAI-compatible API root (.../v1)")
    g.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="NAME of the environment variable holding the API key ('' for none); also the "
        "key of --endpoint models that name no key_env",
    )
    g.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL[,key_env=VAR][,served=ID][,concurrency=N][,rpm=R]",
        help="model NAME is served by its own OpenAI-compatible endpoint URL (repeatable), "
        "with its own API-key variable (key_env='' for none), served model id, cap on calls "
        "in flight and requests per minute; other models use --backend (with --base-url or "
        "--model-path). Cache keys and concurrency caps are per endpoint and model",
    )
    g.add_argument(
        "--model-path",
        action="append",
        default=[],
        help="hf/vllm: PATH (serves every model) or NAME=PATH (repeatable); a .gguf "
        "file is loaded from its folder",
    )
    g.add_argument(
        "--max-tokens", type=int, default=_D("max_tokens"), help="completion limit per call"
    )
    g.add_argument(
        "--concurrency",
        type=int,
        default=_D("concurrency"),
        help="most calls in flight per endpoint",
    )
    g.add_argument(
        "--timeout", type=float, default=_D("timeout_s"), help="limit of one call attempt (s)"
    )
    g.add_argument("--cache", type=Path, default=None, help="sqlite response cache file")
    g.add_argument("--seed", type=int, default=_D("seed"), help="run seed")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, type=Path, help="run store directory")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _load_configs(path: Path) -> list[ConfigSpec]:
    if not path.is_file():
        raise DataError("expected a configurations file; it does not exist.", path=path)
    out: list[ConfigSpec] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "config" not in (reader.fieldnames or []):
                raise DataError(f"expected a 'config' column; got {reader.fieldnames}.", path=path)
            for i, rec in enumerate(reader, start=2):
                try:
                    out.append(ConfigSpec.from_json(rec["config"]))
                except ConfigError as exc:
                    raise DataError(str(exc), path=path, line=i, column="config") from exc
    else:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if isinstance(obj, dict) and "config" in obj and "method" not in obj:
                    obj = obj["config"]
                    obj = json.loads(obj) if isinstance(obj, str) else obj
                out.append(ConfigSpec.from_dict(obj))
            except (json.JSONDecodeError, ConfigError, TypeError) as exc:
                raise DataError(
                    f"expected one ConfigSpec JSON per line; {exc}", path=path, line=i
                ) from exc
    if not out:
        raise DataError("expected at least one configuration; got none.", path=path)
    return list({c.config_id: c for c in out}.values())


def _parse_paths(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep:
            name, path = "*", it
        if not path or name in out:
            raise ConfigError(
                f"--model-path: expected PATH or NAME=PATH once per name; got {it!r}."
            )
        out[name] = path
    return out


def endpoint_specs(args: argparse.Namespace) -> dict[str, EndpointSpec]:
    """Model name (``"*"``: every other model) -> endpoint, from the backend flags."""
    specs: dict[str, EndpointSpec] = {}
    for text in args.endpoint:
        name, spec = parse_endpoint(text)
        if name in specs:
            raise ConfigError(f"--endpoint: expected each NAME once; got {name!r} twice.")
        if "key_env=" not in text:
            spec = dataclasses.replace(spec, api_key_env=args.api_key_env or None)
        specs[name] = dataclasses.replace(spec, timeout_s=args.timeout or 600.0)
    if args.backend == "openai":
        if args.base_url:
            specs["*"] = EndpointSpec(
                backend="openai",
                base_url=args.base_url,
                api_key_env=args.api_key_env or None,
                timeout_s=args.timeout or 600.0,
            )
        elif not specs:
            raise ConfigError(
                "--backend openai: expected --base-url http(s)://HOST/v1 or --endpoint "
                "NAME=URL; got none."
            )
    elif args.backend in ("hf", "vllm"):
        paths = _parse_paths(args.model_path)
        if not paths:
            raise ConfigError(f"--backend {args.backend}: expected --model-path; got none.")
        for name, path in paths.items():
            specs.setdefault(name, EndpointSpec(backend=args.backend, path=path))
    else:
        specs.setdefault("*", EndpointSpec(backend=args.backend))
    return specs


def _mock(spec: EndpointSpec) -> Any:
    from ..testing.mock import MockClient

    return MockClient(**dict(spec.options))


def make_backend(args: argparse.Namespace) -> Any:
    """The raw backend the options describe (not yet managed): one backend, or a
    :class:`ModelRouter` when models have their own endpoints (``--endpoint``, ``NAME=PATH``)."""
    specs = endpoint_specs(args)
    only = specs.get("*")
    if len(specs) == 1 and only is not None and only.backend in ("openai", "mock"):
        # One HTTP (or mock) backend for every model: no router, so its endpoint (part of cache
        # keys and of the store's identity) stays that of the plain backend, as before.
        return build_router(specs, factories={"mock": _mock}).clients["*"]
    return build_router(specs, factories={"mock": _mock})


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run's :class:`RunOptions`, built once from the parsed flags."""
    return RunOptions(
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
        seed=args.seed,
        on_proposer_error=args.on_proposer_error,
        tie_break=args.tie_break,
        copies_first=not args.copies_last,
        judge_model=args.judge_model,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
    )


def _proposers(args: argparse.Namespace) -> list[str]:
    return [p.strip() for p in args.proposers.split(",") if p.strip()]


def _method_configs(args: argparse.Namespace, window: int) -> list[ConfigSpec]:
    try:
        return method_configs(
            args.method,
            proposers=_proposers(args),
            aggregator=args.aggregator,
            n_samples=args.n_samples,
            temperature=args.temperature,
            aggregator_temperature=args.aggregator_temperature,
            layers=args.layers,
            window=window,
            repeats=args.repeats,
            prompt_style=args.prompt_style,
        )
    except ConfigError as exc:
        raise ConfigError(f"--method {args.method}: {exc} (--proposers, --aggregator)") from exc


async def _auto_window(
    args: argparse.Namespace, questions: list[Question], client: Any, store: RunStore
) -> int:
    """Draw the proposer pool, then the largest window its measured lengths fit."""
    if args.context_length is None:
        raise ConfigError("--window auto: expected --context-length N; got none.")
    pool = method_configs(
        "plurality",
        proposers=_proposers(args),
        aggregator=None,
        n_samples=args.n_samples,
        temperature=args.temperature,
    )
    await run_experiment(
        questions,
        pool,
        client=client,
        store=store,
        options=run_options(args),
        progress=not args.no_progress,
        pool_only=True,
    )
    rows = [r for r in store.rows() if r.get("role") == "proposer"]
    lengths = [int(r.get("completion_tokens") or 0) for r in rows]
    try:
        window = choose_window(
            lengths,
            context_length=args.context_length,
            prompt_tokens=max(int(r.get("prompt_tokens") or 0) for r in rows) + 200,
            max_tokens=args.max_tokens,
            repeats=args.repeats,
            n_samples=args.n_samples,
        )
    except ConfigError as exc:
        raise ConfigError(f"{exc} (--max-tokens, --repeats, --context-length)") from exc
    print(f"window: {window} (auto, from {len(lengths)} measured samples)")  # noqa: T201
    return window


async def _configs(
    args: argparse.Namespace, questions: list[Question], client: Any, store: RunStore
) -> list[ConfigSpec]:
    if args.configs is not None:
        return _load_configs(args.configs)
    if args.window == "auto" and args.method == "self_moa_seq":
        return _method_configs(args, await _auto_window(args, questions, client, store))
    try:
        window = int(args.window)
    except ValueError:
        raise ConfigError(f"--window: expected an int or 'auto'; got {args.window!r}.") from None
    return _method_configs(args, window)


def _claim(store: RunStore, client: Any, options: RunOptions) -> None:
    """Refuse a store made with other settings before anything is generated."""
    try:
        store.claim(run_identity(client, options), record={"options": options.to_dict()})
    except ConfigError as exc:
        raise ConfigError(
            f"{exc} CLI: pass a new --out DIR, or the options the store was made with "
            f"(see {store.directory / 'run.json'})."
        ) from exc


async def _ping(client: Any) -> None:
    """A dead endpoint fails here, in one line naming it, before any generation."""
    try:
        await ping(client)
    except AuthError:
        raise
    except ProviderError as exc:
        raise ProviderError(f"{exc} (--base-url, --model-path)", kind=exc.kind) from exc


async def _run(args: argparse.Namespace) -> RunSummary:
    from ..runner.llm.managed import ManagedClient

    questions = load_questions(args.questions, task=args.task, limit=args.limit)
    options = run_options(args)
    store = RunStore(args.out)
    backend = make_backend(args)
    cache = None
    if args.cache is not None:
        from ..runner.llm.cache import ResponseCache

        cache = ResponseCache(args.cache)
    client = ManagedClient(
        backend,
        cache=cache,
        max_concurrency=options.concurrency,
        timeout_s=options.timeout_s,
        seed=options.seed,
    )
    try:
        _claim(store, client, options)
        await _ping(client)
        configs = await _configs(args, questions, client, store)
        summary = await run_experiment(
            questions,
            configs,
            client=client,
            store=store,
            options=options,
            progress=not args.no_progress,
        )
    finally:
        close = getattr(backend, "aclose", None)
        if callable(close):
            await close()
        if cache is not None:
            cache.close()
    out = store.write_outputs(args.out / "outputs.jsonl")
    print(f"summary: {summary}")  # noqa: T201
    print(f"configurations: {len(configs)}; questions: {len(questions)}")  # noqa: T201
    print(f"wrote {store.path}")  # noqa: T201
    print(f"wrote {out}")  # noqa: T201
    return summary


def exit_code(summary: RunSummary) -> int:
    """0 when nothing failed, :data:`EXIT_SOME_FAILED` or :data:`EXIT_ALL_FAILED` otherwise."""
    if not (summary.n_errors or summary.n_failed_configs):
        return 0
    return EXIT_ALL_FAILED if summary.all_failed else EXIT_SOME_FAILED


def _report_failures(summary: RunSummary) -> None:
    which = ", ".join(f"{k}: {n}" for k, n in sorted(summary.error_counts.items()))
    what = "every" if summary.all_failed else "some"
    print(  # noqa: T201  (the CLI boundary)
        f"error: {what} call failed: {summary.n_errors} of {summary.n_new_rows} new rows are "
        f"errors ({which}); failed configurations {summary.n_failed_configs}. First error: "
        f"{summary.first_error}. Rerun the same command to retry them.",
        file=sys.stderr,
    )


def _body(args: argparse.Namespace) -> int:
    summary = asyncio.run(_run(args))
    code = exit_code(summary)
    if code:
        _report_failures(summary)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see ``--help``: 0 ok, 1 error, 2 usage, 3 some calls
    failed, 4 every call failed, 130 interrupted)."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
