"""CLI: run MoA methods or a list of configurations over a question file into a run store.

``python -m qdanalysis.run --questions Q.jsonl --method self_moa --proposers M --aggregator M
--backend hf --model-path DIR --out runs/x`` generates the shared proposer pool, then the
aggregator calls, appending every row to ``runs/x/rows.jsonl``; at the end it writes the outputs
table ``runs/x/outputs.jsonl`` (ok rows only, atomically). Rerunning the same command resumes: rows
already stored are not asked again, error rows are retried.

Neighbours: :mod:`qdanalysis.runner.moa` does the work; ``python -m qdanalysis.fit --outputs
runs/x/outputs.jsonl`` analyses the result.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..configs import ConfigSpec
from ..errors import ConfigError, DataError, ProviderError
from ..runner.llm.base import ChatRequest, ChatResponse
from ..runner.moa import choose_window, method_configs, run_experiment
from ..runner.store import RunStore
from ..runner.tasks import load_questions
from ._common import base_parser, run_main

__all__ = ["ModelRouter", "build_parser", "main"]

METHODS = ("mixed_moa", "self_moa", "self_moa_seq", "single", "plurality", "usc")


class ModelRouter:
    """A chat client sending each model name to its own backend.

    Parameters
    ----------
    clients
        Model name -> backend. Key ``"*"`` serves every other name.
    """

    supports_n = True

    def __init__(self, clients: dict[str, Any]) -> None:
        if not clients:
            raise ConfigError("ModelRouter: expected at least one backend; got none.")
        self.clients = clients
        self.endpoint = (
            "router("
            + ",".join(f"{k}={getattr(c, 'endpoint', '?')}" for k, c in sorted(clients.items()))
            + ")"
        )

    def _client(self, model: str) -> Any:
        c = self.clients.get(model, self.clients.get("*"))
        if c is None:
            raise ConfigError(
                f"model {model!r}: expected one of {sorted(self.clients)}; add "
                f"--model-path {model}=PATH."
            )
        return c

    def endpoint_for(self, model: str) -> str:
        """The endpoint of the backend serving ``model`` (cache key and concurrency scope)."""
        return f"{self._client(model).endpoint}#{model}"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Forward to the backend serving ``request.model``."""
        resp: ChatResponse = await self._client(request.model).complete(request)
        return resp

    async def complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        """Forward ``n`` samples, one by one when the backend cannot batch them."""
        c = self._client(request.model)
        if getattr(c, "supports_n", False):
            out: list[ChatResponse] = await c.complete_n(request, n)
            return out
        import dataclasses

        return list(
            await asyncio.gather(
                *(
                    c.complete(dataclasses.replace(request, sample_index=request.sample_index + j))
                    for j in range(n)
                )
            )
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` documents every option)."""
    p = base_parser(
        "python -m qdanalysis.run",
        "Run Mixture-of-Agents methods or configurations over questions. Rows go to "
        "OUT/rows.jsonl (append-only, resumable); the outputs table to OUT/outputs.jsonl. "
        "Rerun the same command to resume.",
    )
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
    g.add_argument("--n-samples", type=int, default=6, help="samples per model (self methods)")
    g.add_argument(
        "--window",
        default="6",
        help="Self-MoA-Seq window w, or 'auto' (largest that fits --context-length, "
        "from measured sample lengths; see qdanalysis.runner.moa.choose_window)",
    )
    g.add_argument("--repeats", type=int, default=3, help="Self-MoA-Seq copies k of the synthesis")
    g.add_argument(
        "--copies-last",
        action="store_true",
        help="Self-MoA-Seq: put the synthesis copies after the new samples",
    )
    g.add_argument("--context-length", type=int, default=None, help="aggregator context (tokens)")
    g.add_argument("--layers", type=int, default=1, help="Mixed-MoA proposer layers")
    g.add_argument("--temperature", type=float, default=0.7, help="proposer temperature")
    g.add_argument(
        "--aggregator-temperature",
        type=float,
        default=0.7,
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
        choices=("fail", "skip"),
        default="fail",
        help="a proposer failed after retries: mark the configuration failed, or "
        "aggregate the remaining references (recorded in n_references)",
    )
    g.add_argument(
        "--tie-break",
        choices=("expected", "seeded"),
        default="expected",
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
        help="NAME of the environment variable holding the API key ('' for none)",
    )
    g.add_argument(
        "--model-path",
        action="append",
        default=[],
        help="hf/vllm: PATH (serves every model) or NAME=PATH (repeatable); a .gguf "
        "file is loaded from its folder",
    )
    g.add_argument("--max-tokens", type=int, default=2048, help="completion limit per call")
    g.add_argument("--concurrency", type=int, default=8, help="most calls in flight per endpoint")
    g.add_argument("--cache", type=Path, default=None, help="sqlite response cache file")
    g.add_argument("--seed", type=int, default=0, help="run seed")
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


def make_backend(args: argparse.Namespace) -> Any:
    """The raw backend the options describe (not yet managed)."""
    if args.backend == "mock":
        from ..testing.mock import MockClient

        return MockClient()
    if args.backend == "openai":
        from ..runner.llm.openai_compat import OpenAICompatClient

        if not args.base_url:
            raise ConfigError("--backend openai: expected --base-url http(s)://HOST/v1; got none.")
        return OpenAICompatClient(args.base_url, api_key_env=args.api_key_env or None)
    paths = _parse_paths(args.model_path)
    if not paths:
        raise ConfigError(f"--backend {args.backend}: expected --model-path; got none.")
    loaded: dict[str, Any] = {}
    clients: dict[str, Any] = {}
    for name, path in paths.items():
        if path not in loaded:
            if args.backend == "hf":
                from ..runner.llm.hf_local import HFLocalClient

                pth = Path(path)
                if pth.suffix == ".gguf":
                    loaded[path] = HFLocalClient(pth.parent, gguf_file=pth.name)
                else:
                    loaded[path] = HFLocalClient(pth)
            else:
                from ..runner.llm.vllm_offline import VLLMOfflineClient

                loaded[path] = VLLMOfflineClient(path)
        clients[name] = loaded[path]
    return ModelRouter(clients)


async def _main_async(args: argparse.Namespace) -> int:
    from ..runner.llm.managed import ManagedClient

    questions = load_questions(args.questions, task=args.task, limit=args.limit)
    store = RunStore(args.out)
    backend = make_backend(args)
    cache = None
    if args.cache is not None:
        from ..runner.llm.cache import ResponseCache

        cache = ResponseCache(args.cache)
    client = ManagedClient(backend, cache=cache, max_concurrency=args.concurrency, seed=args.seed)
    common: dict[str, Any] = {
        "seed": args.seed,
        "progress": not args.no_progress,
        "max_tokens": args.max_tokens,
        "on_proposer_error": args.on_proposer_error,
        "judge_model": args.judge_model,
        "copies_first": not args.copies_last,
        "tie_break": args.tie_break,
        "default_temperature": args.temperature,
    }
    proposers = [p.strip() for p in args.proposers.split(",") if p.strip()]

    def configs_for(window: int) -> list[ConfigSpec]:
        return method_configs(
            args.method,
            proposers=proposers,
            aggregator=args.aggregator,
            n_samples=args.n_samples,
            temperature=args.temperature,
            aggregator_temperature=args.aggregator_temperature,
            layers=args.layers,
            window=window,
            repeats=args.repeats,
            prompt_style=args.prompt_style,
        )

    try:
        if args.configs is not None:
            configs = _load_configs(args.configs)
        elif args.window == "auto" and args.method == "self_moa_seq":
            if args.context_length is None:
                raise ConfigError("--window auto: expected --context-length N; got none.")
            pool = [
                c
                for c in method_configs(
                    "plurality",
                    proposers=proposers,
                    aggregator=None,
                    n_samples=args.n_samples,
                    temperature=args.temperature,
                )
            ]
            await run_experiment(
                questions, pool, client=client, store=store, pool_only=True, **common
            )
            rows = [r for r in store.rows() if r.get("role") == "proposer"]
            lengths = [int(r.get("completion_tokens") or 0) for r in rows]
            prompt = max(int(r.get("prompt_tokens") or 0) for r in rows) + 200
            window = choose_window(
                lengths,
                context_length=args.context_length,
                prompt_tokens=prompt,
                max_tokens=args.max_tokens,
                repeats=args.repeats,
                n_samples=args.n_samples,
            )
            print(f"window: {window} (auto, from {len(lengths)} measured samples)")  # noqa: T201
            configs = configs_for(window)
        else:
            try:
                window = int(args.window)
            except ValueError:
                raise ConfigError(
                    f"--window: expected an int or 'auto'; got {args.window!r}."
                ) from None
            configs = configs_for(window)
        summary = await run_experiment(questions, configs, client=client, store=store, **common)
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
    if summary.n_errors or summary.n_failed_configs:
        print("some calls failed; rerun the same command to retry them.", file=sys.stderr)  # noqa: T201
    return 0


def _body(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main_async(args))
    except ProviderError:
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
