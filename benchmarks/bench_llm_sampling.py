"""Time per LLM call (tiny Llama, SmolLM2; in process and over loopback HTTP) and the n speed-up.

For each model and transport: one warm call, then six samples drawn either as one request with
``n=6`` or as six separate requests (sequential, like a cacheless loop; and concurrent, like the
MoA runner). Ratios are to the separate sequential requests of the same run.

Usage: ``python benchmarks/bench_llm_sampling.py [--skip-smollm2] [--max-tokens 48] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_ROOT), str(_ROOT / "tests" / "runner" / "llm")]

from fixtures import serve_model  # noqa: E402

from qdanalysis.runner.llm import ChatRequest  # noqa: E402
from qdanalysis.runner.llm.hf_local import HFLocalClient  # noqa: E402
from qdanalysis.runner.llm.openai_compat import OpenAICompatClient  # noqa: E402
from qdanalysis.testing.local_models import make_tiny_llama, prepare_smollm2  # noqa: E402

N = 6


def timed(client: Any, fn: Any, repeats: int) -> float:
    async def go() -> float:
        times = []
        try:
            for _ in range(repeats):
                t = time.perf_counter()
                await fn(client)
                times.append(time.perf_counter() - t)
        finally:
            if hasattr(client, "aclose"):
                await client.aclose()
        return statistics.median(times)

    return asyncio.run(go())


def bench(client: Any, model: str, max_tokens: int, repeats: int) -> dict[str, float]:
    req = ChatRequest(
        model=model,
        messages=({"role": "user", "content": "Explain why the sky is blue."},),
        temperature=0.7,
        max_tokens=max_tokens,
        seed=1,
    )
    reqs = [dataclasses.replace(req, sample_index=k) for k in range(N)]

    async def one(c: Any) -> None:
        await c.complete(req)

    async def seq(c: Any) -> None:
        for r in reqs:
            await c.complete(r)

    async def conc(c: Any) -> None:
        await asyncio.gather(*(c.complete(r) for r in reqs))

    async def batch(c: Any) -> None:
        await c.complete_n(req, N)

    timed(client, one, 1)  # warm up
    return {
        "one": timed(client, one, repeats),
        "seq": timed(client, seq, repeats),
        "conc": timed(client, conc, repeats),
        "n6": timed(client, batch, repeats),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [("tiny-llama", make_tiny_llama(Path(tmp) / "tiny-llama"))]
        if not args.skip_smollm2:
            models.append(("SmolLM2-135M-Instruct", prepare_smollm2()))
        for name, path in models:
            local = HFLocalClient(path, device="cpu", model_name=name)
            local.warm_up()
            rows.append((name, "in-process", bench(local, name, args.max_tokens, args.repeats)))
            del local
            with serve_model(path, extra_args=["--model-name", name]) as url:
                http = OpenAICompatClient(url, api_key_env=None)
                rows.append((name, "http", bench(http, name, args.max_tokens, args.repeats)))
    print(
        f"max_tokens={args.max_tokens}, median of {args.repeats}; times in s; "
        f"ratios are 6 separate sequential requests / variant"
    )
    print(
        f"{'model':<22} {'transport':<11} {'1 call':>7} {'6 seq':>7} {'6 conc':>7} {'n=6':>7}"
        f" {'seq/conc':>8} {'seq/n6':>7}"
    )
    for name, transport, t in rows:
        print(
            f"{name:<22} {transport:<11} {t['one']:7.3f} {t['seq']:7.3f} {t['conc']:7.3f} "
            f"{t['n6']:7.3f} {t['seq'] / t['conc']:8.2f} {t['seq'] / t['n6']:7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
