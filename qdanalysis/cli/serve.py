"""CLI: serve MoA methods as OpenAI-compatible models.

``python -m qdanalysis.serve --method self_moa --proposers M --n-samples 6 --aggregator M
--backend openai --base-url http://127.0.0.1:8000/v1 --port 8080`` serves one ensemble per
configuration the method makes (``self_moa`` over two proposer models makes two), named
``<method>:<models>`` unless ``--name`` is given; ``--configs FILE`` serves the configurations
of a JSONL/CSV file instead. The backend flags are those of ``python -m qdanalysis.run``
(``--backend mock`` included). Point any OpenAI client at ``http://HOST:PORT/v1`` and ask for
a model listed by ``/v1/models``.

Neighbours: :mod:`qdanalysis.runner.serve` is the library (``build_app``); :mod:`qdanalysis.run`
runs the same methods in batch over a question file.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..configs import DEFAULT_AGGREGATOR_TEMPERATURE, ConfigSpec
from ..errors import ConfigError
from ..runner.moa import (
    CLI_METHODS,
    DEFAULT_N_SAMPLES,
    DEFAULT_REPEATS,
    DEFAULT_WINDOW,
)
from ..runner.options import RunOptions
from ..runner.serve import Ensemble, ServeLimits, build_app, ensemble_method
from ..runner.store import RunStore
from ._common import base_parser, run_main
from .run import _load_configs, _method_configs, add_backend_arguments, make_backend

__all__ = ["build_parser", "ensembles_from_args", "limits_from_args", "main"]

_D = RunOptions.default
_L = ServeLimits()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` documents every option)."""
    p = base_parser(
        "python -m qdanalysis.serve",
        "Serve Mixture-of-Agents methods as OpenAI-compatible models: GET /v1/models lists "
        "the ensembles, POST /v1/chat/completions runs one (request temperature, max_tokens "
        "and stop apply to the aggregator; proposers keep the flags below).",
    )
    g = p.add_argument_group("ensembles")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--method", choices=CLI_METHODS, help="serve one method")
    what.add_argument("--configs", type=Path, help="serve each ConfigSpec of a JSONL/CSV file")
    g.add_argument("--proposers", default="", help="comma-separated proposer models")
    g.add_argument("--aggregator", default=None, help="aggregator model (LLM methods)")
    g.add_argument("--n-samples", type=int, default=DEFAULT_N_SAMPLES, help="samples per model")
    g.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="Self-MoA-Seq window w")
    g.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="Self-MoA-Seq copies k")
    g.add_argument("--copies-last", action="store_true", help="Self-MoA-Seq copies after samples")
    g.add_argument("--layers", type=int, default=1, help="Mixed-MoA proposer layers")
    g.add_argument(
        "--temperature", type=float, default=_D("temperature"), help="proposer temperature"
    )
    g.add_argument("--top-p", type=float, default=_D("top_p"), help="nucleus mass of every call")
    g.add_argument(
        "--stop",
        action="append",
        default=[],
        help="stop string of every call; a request's stop replaces it for the aggregator",
    )
    g.add_argument(
        "--aggregator-temperature",
        type=float,
        default=DEFAULT_AGGREGATOR_TEMPERATURE,
        help="aggregator temperature when a request gives none",
    )
    g.add_argument("--prompt-style", choices=("moa", "zeroeval"), default="moa")
    g.add_argument("--name", default=None, help="served model id (one ensemble only)")
    g.add_argument(
        "--min-references",
        type=int,
        default=None,
        help="fewest successful references that still make an answer (default: all); fewer "
        "gives the client an error, never a smaller ensemble's answer",
    )
    g.add_argument(
        "--scorer",
        default="exact",
        help="answer extraction for plurality votes: exact (whole text), math, multiple_choice",
    )
    add_backend_arguments(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on")
    g.add_argument("--port", type=int, default=8080, help="port to listen on")
    g.add_argument(
        "--max-active", type=int, default=_L.max_active, help="requests answered at once"
    )
    g.add_argument(
        "--max-queued", type=int, default=_L.max_queued, help="waiting requests (429 past it)"
    )
    g.add_argument(
        "--queue-timeout", type=float, default=_L.queue_timeout_s, help="most wait (503 past)"
    )
    g.add_argument(
        "--max-request-bytes", type=int, default=_L.max_request_bytes, help="413 past it"
    )
    g.add_argument("--max-n", type=int, default=_L.max_n, help="largest n of a request")
    g.add_argument(
        "--proposer-timeout",
        type=float,
        default=_L.proposer_timeout_s,
        help="most seconds of one reference call, retries included",
    )
    g.add_argument(
        "--aggregator-timeout",
        type=float,
        default=_L.aggregator_timeout_s,
        help="most seconds of one aggregator (or layer, step, single) call, retries included",
    )
    g.add_argument(
        "--record",
        type=Path,
        default=None,
        help="run store DIR: every answered request's rows go to DIR/rows.jsonl, and "
        "DIR/outputs.jsonl (for fit) is written at shutdown",
    )
    g.add_argument(
        "--server-key-env",
        default=None,
        help="NAME of the environment variable holding the bearer key clients must send "
        "(default: an open server)",
    )
    return p


def _name(spec: ConfigSpec) -> str:
    models = dict.fromkeys(s.model for s in spec.proposers)
    return f"{ensemble_method(spec)}:{'+'.join(models)}"


def _specs(args: argparse.Namespace) -> list[ConfigSpec]:
    if args.configs is not None:
        return _load_configs(args.configs)
    return _method_configs(args, args.window)


def ensembles_from_args(args: argparse.Namespace) -> list[Ensemble]:
    """The served ensembles the parsed flags describe."""
    specs = _specs(args)
    if args.name is not None and len(specs) != 1:
        raise ConfigError(
            f"--name: expected one ensemble to name; got {len(specs)} (one per proposer model). "
            "Drop --name to get <method>:<model> names."
        )
    options = RunOptions(
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
        seed=args.seed,
        copies_first=not args.copies_last,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
    )
    names = [args.name] if args.name is not None else [_name(s) for s in specs]
    if len(set(names)) != len(names):
        names = [f"{n}:{s.config_id}" for n, s in zip(names, specs, strict=True)]
    try:
        return [
            Ensemble(
                name=n,
                spec=s,
                options=options,
                min_references=args.min_references,
                scorer=args.scorer,
            )
            for n, s in zip(names, specs, strict=True)
        ]
    except ConfigError as exc:
        raise ConfigError(f"{exc} (--min-references, --scorer)") from exc


def limits_from_args(args: argparse.Namespace) -> ServeLimits:
    """The server's :class:`ServeLimits` from the parsed flags."""
    return ServeLimits(
        max_active=args.max_active,
        max_queued=args.max_queued,
        queue_timeout_s=args.queue_timeout,
        max_request_bytes=args.max_request_bytes,
        max_n=args.max_n,
        proposer_timeout_s=args.proposer_timeout,
        aggregator_timeout_s=args.aggregator_timeout,
        api_key_env=args.server_key_env,
    )


def _client(args: argparse.Namespace, backend: Any) -> Any:
    from ..runner.llm.managed import ManagedClient

    cache = None
    if args.cache is not None:
        from ..runner.llm.cache import ResponseCache

        cache = ResponseCache(args.cache)
    return ManagedClient(
        backend,
        cache=cache,
        max_concurrency=args.concurrency,
        timeout_s=args.timeout,
        seed=args.seed,
    )


def _body(args: argparse.Namespace) -> int:
    import uvicorn

    ensembles = ensembles_from_args(args)
    limits = limits_from_args(args)
    store = None if args.record is None else RunStore(args.record)
    app = build_app(ensembles, _client(args, make_backend(args)), limits, store=store)
    names = ", ".join(e.name for e in ensembles)
    print(f"serving {names} on http://{args.host}:{args.port}/v1", flush=True)  # noqa: T201
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    try:
        asyncio.run(uvicorn.Server(config).serve())
    finally:
        if store is not None:
            print(f"wrote {store.write_outputs(store.directory / 'outputs.jsonl')}")  # noqa: T201
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 after a clean shutdown, 1 error, 2 usage)."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
