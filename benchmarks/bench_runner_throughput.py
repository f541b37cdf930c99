"""Runner throughput on a real engine (vLLM, CPU build) against the engine's own batch generate.

Run it with the vLLM environment's interpreter (``make setup-vllm``)::

    .venv-vllm/bin/python benchmarks/bench_runner_throughput.py [--questions 8] [--samples 6]

On the same proposer prompts (CRUXEval-O, ``crux_direct``) and sampling parameters (``n`` samples
per prompt, temperature 0.7, ``max_tokens``, a seed per request) it times:

1. ``engine``: ``vllm.LLM.generate`` on every prompt at once with ``SamplingParams(n=...)``;
2. ``runner-offline``: ``run_experiment`` (the proposer pool of a Self-MoA configuration) over
   :class:`~qdanalysis.runner.llm.vllm_offline.VLLMOfflineClient` wrapping the same ``LLM``;
3. ``runner-offline-no-n``: the same with ``n`` hidden (one request per sample);
4. ``runner-server``: ``run_experiment`` over a vLLM OpenAI-compatible server
   (:class:`~qdanalysis.testing.vllm_server.VLLMServer`, same engine flags) through
   :class:`~qdanalysis.runner.llm.openai_compat.OpenAICompatClient`, and
   ``runner-server-no-n`` one HTTP request per sample;
5. ``pool sharing``: ``K`` configurations over one shared pool (what the runner does) against ``K``
   configurations each with its own samples (what a per-configuration loop would generate).

Throughput is completion tokens per second of wall time; the ratios are runner / engine
(goal >= 0.9). Results go to ``benchmarks/results/runner_throughput.{csv,md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

from qdanalysis.configs import AggregatorSpec, ConfigSpec, ProposerSlot  # noqa: E402
from qdanalysis.runner.llm.managed import ManagedClient  # noqa: E402
from qdanalysis.runner.moa import run_experiment  # noqa: E402
from qdanalysis.runner.options import RunOptions  # noqa: E402
from qdanalysis.runner.store import RunStore  # noqa: E402
from qdanalysis.runner.tasks import TASKS, load_questions  # noqa: E402
from qdanalysis.testing.local_models import default_model_cache  # noqa: E402

QUESTIONS = _ROOT / "data" / "runs" / "crux_qwen_smollm2" / "questions.jsonl"
RESULTS = _ROOT / "benchmarks" / "results"
MODEL = "smollm2"


class _NoN:
    """A backend with ``n`` hidden: the runner then asks one request per sample."""

    supports_n = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.endpoint = f"{inner.endpoint}#no-n"

    async def complete(self, request: Any) -> Any:
        return await self.inner.complete(request)


def _configs(samples: int, k: int, shared: bool) -> list[ConfigSpec]:
    """``k`` Self-MoA configurations of ``samples - 1`` slots each.

    ``shared``: configuration ``j`` leaves out sample ``j`` of one ``samples``-sample pool (what
    the runner generates once); otherwise each has its own ``samples - 1`` samples (what a loop
    generating per configuration asks for).
    """
    out = []
    for j in range(k):
        if shared:
            indices = [i for i in range(samples) if i != j % samples]
        else:
            indices = [j * (samples - 1) + i for i in range(samples - 1)]
        slots = tuple(ProposerSlot(model=MODEL, sample_index=i, temperature=0.7) for i in indices)
        out.append(
            ConfigSpec(
                method="self_moa", proposers=slots, aggregator=AggregatorSpec(kind="plurality_vote")
            )
        )
    return out


def _pool(samples: int) -> list[ConfigSpec]:
    """One Self-MoA configuration over all ``samples`` samples (the throughput runs)."""
    slots = tuple(
        ProposerSlot(model=MODEL, sample_index=i, temperature=0.7) for i in range(samples)
    )
    return [ConfigSpec(method="self_moa", proposers=slots, aggregator=AggregatorSpec())]


def _run_pool(client: Any, questions: Sequence[Any], configs: Sequence[ConfigSpec], args: Any):
    """Time ``run_experiment(pool_only=True)``; returns (seconds, completion tokens, calls)."""
    options = RunOptions(
        temperature=0.7, max_tokens=args.max_tokens, seed=0, concurrency=args.concurrency
    )
    managed = ManagedClient(client, max_concurrency=args.concurrency, timeout_s=1800, seed=0)
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(Path(d) / "run")
        t = time.perf_counter()
        summary = asyncio.run(
            run_experiment(
                questions,
                configs,
                client=managed,
                store=store,
                options=options,
                progress=False,
                pool_only=True,
            )
        )
        elapsed = time.perf_counter() - t
    if summary.n_errors:
        raise RuntimeError(f"benchmark run had errors: {summary.first_error}")
    return elapsed, summary.completion_tokens, summary.n_calls


def _engine(llm: Any, vllm: Any, questions: Sequence[Any], args: Any) -> tuple[float, int, int]:
    """``LLM.generate`` on every prompt at once: the engine's own batch path."""
    tok = llm.get_tokenizer()
    task = TASKS["crux_direct"]
    prompts = [
        tok.apply_chat_template(task.messages(q), add_generation_prompt=True, tokenize=False)
        for q in questions
    ]
    params = [
        vllm.SamplingParams(n=args.samples, temperature=0.7, max_tokens=args.max_tokens, seed=i)
        for i in range(len(prompts))
    ]
    t = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - t
    tokens = sum(len(o.token_ids) for out in outs for o in out.outputs)
    return elapsed, tokens, len(prompts)


def _row(name: str, s: float, tokens: int, calls: int, ref_tps: float | None) -> dict[str, Any]:
    tps = tokens / s if s else float("nan")
    return {
        "benchmark": name,
        "seconds": round(s, 2),
        "completion_tokens": tokens,
        "calls": calls,
        "tokens_per_s": round(tps, 1),
        "ratio_to_engine": "" if ref_tps is None else round(tps / ref_tps, 3),
    }


def _offline(args: Any, questions: Sequence[Any], model_dir: Path) -> list[dict[str, Any]]:
    import vllm

    from qdanalysis.runner.llm.vllm_offline import VLLMOfflineClient

    client = VLLMOfflineClient(str(model_dir))
    pool = _pool(args.samples)
    _engine(client.llm, vllm, questions[:2], args)  # warm-up
    rows: list[dict[str, Any]] = []
    for rep in range(args.repeats):  # interleaved: engine, runner, runner without n
        e = _engine(client.llm, vllm, questions, args)
        rows.append(_row(f"engine LLM.generate (n={args.samples}) #{rep}", *e, None))
        r = _run_pool(client, questions, pool, args)
        rows.append(_row(f"runner-offline #{rep}", *r, e[1] / e[0]))
        no_n = _run_pool(_NoN(client), questions, pool, args)
        rows.append(_row(f"runner-offline-no-n #{rep}", *no_n, e[1] / e[0]))
    shared = _run_pool(client, questions, _configs(args.samples, args.configs, True), args)
    rows.append(_row(f"pool shared by {args.configs} configurations", *shared, None))
    own = _run_pool(client, questions, _configs(args.samples, args.configs, False), args)
    rows.append(_row(f"{args.configs} configurations, own samples each", *own, None))
    return rows


def _server(args: Any, questions: Sequence[Any], model_dir: Path, ref_tps: float) -> list[dict]:
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient
    from qdanalysis.testing.vllm_server import VLLMServer

    rows: list[dict[str, Any]] = []
    pool = _pool(args.samples)
    with VLLMServer(model_dir, served_model_name=MODEL, threads=args.threads) as server:
        client = OpenAICompatClient(server.base_url, api_key_env=None)
        _run_pool(client, questions[:2], pool, args)  # warm-up
        for rep in range(args.repeats):
            r = _run_pool(
                OpenAICompatClient(server.base_url, api_key_env=None), questions, pool, args
            )
            rows.append(_row(f"runner-server #{rep}", *r, ref_tps))
            n1 = OpenAICompatClient(server.base_url, api_key_env=None)
            no_n = _run_pool(_NoN(n1), questions, pool, args)
            rows.append(_row(f"runner-server-no-n #{rep}", *no_n, ref_tps))
    return rows


def _write(rows: list[dict[str, Any]], info: dict[str, str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "runner_throughput.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["# Runner throughput on vLLM (CPU)", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    (RESULTS / "runner_throughput.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS / "runner_throughput.json").write_text(
        json.dumps({"info": info, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--configs", type=int, default=4, help="configurations of the sharing test")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", default=os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0"))
    p.add_argument("--skip-server", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", args.threads)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model_dir = default_model_cache() / "SmolLM2-135M-Instruct"
    questions = load_questions(QUESTIONS, limit=args.questions)
    t0 = time.perf_counter()
    rows = _offline(args, questions, model_dir)
    engine_tps = [float(r["tokens_per_s"]) for r in rows if r["benchmark"].startswith("engine")]
    if not args.skip_server:
        rows += _server(args, questions, model_dir, sum(engine_tps) / len(engine_tps))
    info = {
        "model": "SmolLM2-135M-Instruct (bf16 on vLLM CPU, eager, chunked prefill off)",
        "prompts": f"{args.questions} CRUXEval-O questions (crux_direct), n={args.samples}, "
        f"T=0.7, max_tokens={args.max_tokens}, a seed per request",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} "
        f"at the end; VLLM_CPU_OMP_THREADS_BIND={args.threads}",
        "wall_s": f"{time.perf_counter() - t0:.0f}",
    }
    _write(rows, info)
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
