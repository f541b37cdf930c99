"""Serving: an ensemble's overhead over its upstream calls, and a loopback load test with faults.

* **overhead**: Self-MoA (6 samples + aggregator) served over the mock backend with a fixed
  latency per call. Baselines: the critical path of its upstream calls (slowest reference +
  the aggregator, from the response's own ``x_moa`` latencies) and their sum (what a client
  calling them one by one would wait). Candidate: the served request, HTTP round trip included.
* **load**: ``n_clients`` concurrent clients per round against one server whose upstream
  fails at random (429, 500, hangs; seeded): every request must be answered or refused with an
  OpenAI error JSON (429/502/503/504), none lost; RSS before and after says whether memory
  stays bounded. :func:`load_test` is also what ``tests/serve/test_serve_load.py`` runs.

Usage: ``python benchmarks/bench_serve.py [--clients 200] [--rounds 3]`` (or ``python -m
benchmarks --only serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from qdanalysis._hashing import content_hash  # noqa: E402
from qdanalysis.errors import ProviderError  # noqa: E402
from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy  # noqa: E402
from qdanalysis.runner.moa import method_configs  # noqa: E402
from qdanalysis.runner.serve import Ensemble, ServeLimits, build_app  # noqa: E402
from qdanalysis.testing import MockClient  # noqa: E402

MODEL = "moa"
REFUSALS = {429, 502, 503, 504}


class FlakyMock(MockClient):
    """The mock whose calls fail at random, seeded per (request, attempt): 429, 500 or a hang."""

    def __init__(
        self, *, p_429: float, p_500: float, p_hang: float, seed: int = 0, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.p = (p_429, p_429 + p_500, p_429 + p_500 + p_hang)
        self.seed = seed
        self.tries: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    async def complete(self, request: Any) -> Any:
        key = content_hash(request.key_fields(), length=16)
        self.tries[key] += 1
        u = random.Random(f"{self.seed}:{key}:{self.tries[key]}").random()
        if u < self.p[0]:
            self.injected["429"] += 1
            raise ProviderError("injected HTTP 429", kind="rate_limit", retry_after=0.0)
        if u < self.p[1]:
            self.injected["500"] += 1
            raise ProviderError("injected HTTP 500", kind="transient")
        if u < self.p[2]:
            self.injected["hang"] += 1
            await asyncio.sleep(3600)
        return await super().complete(request)


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """``app`` under uvicorn in a daemon thread on a free loopback port; yields its /v1 URL."""
    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url + "/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def self_moa(n_samples: int = 6, **kw: Any) -> Ensemble:
    (spec,) = method_configs("self_moa", proposers=["m"], aggregator="m", n_samples=n_samples)
    return Ensemble(name=MODEL, spec=spec, **kw)


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


def _verdict(status: int, body: Any, need: int) -> str:
    """``answered``, ``refused <status>`` or ``lost: why`` for one response."""
    if status == 200:
        x = body.get("x_moa", {})
        text = body["choices"][0]["message"]["content"]
        ok = text and x.get("n_references", 0) >= need and body["usage"]["total_tokens"] > 0
        return "answered" if ok else f"lost: bad answer {body!r:.200}"
    err = body.get("error") if isinstance(body, dict) else None
    if status in REFUSALS and err and err.get("message") and err.get("type") and err.get("code"):
        return f"refused {status}"
    return f"lost: HTTP {status} {body!r:.200}"


async def _round(url: str, n_clients: int, need: int, seed: int) -> list[tuple[str, float]]:
    import httpx

    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:

        async def one(i: int) -> tuple[str, float]:
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"question {seed}-{i}"}],
            }
            t = time.perf_counter()
            try:
                r = await c.post(f"{url}/chat/completions", json=body)
                verdict = _verdict(r.status_code, r.json(), need)
            except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
                verdict = f"lost: {type(exc).__name__}: {exc}"
            return verdict, time.perf_counter() - t

        return list(await asyncio.gather(*(one(i) for i in range(n_clients))))


def load_test(
    *,
    n_clients: int = 200,
    rounds: int = 3,
    faults: Sequence[float] = (0.05, 0.05, 0.02),
    min_references: int = 4,
    limits: ServeLimits | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Rounds of ``n_clients`` concurrent requests against a faulty upstream (see module doc).

    Returns counts by verdict, latency percentiles, throughput, RSS (MB) after the first
    round and after the last, and the faults injected.
    """
    backend = FlakyMock(p_429=faults[0], p_500=faults[1], p_hang=faults[2], seed=seed)
    client = ManagedClient(
        backend,
        max_concurrency=64,
        timeout_s=0.5,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05),
    )
    limits = limits or ServeLimits(
        max_active=64, max_queued=96, queue_timeout_s=20, proposer_timeout_s=2.0
    )
    ensemble = self_moa(min_references=min_references)
    out: dict[str, Any] = {"clients": n_clients, "rounds": rounds}
    verdicts: Counter[str] = Counter()
    latencies: list[float] = []
    with running(build_app([ensemble], client, limits)) as url:
        t0 = time.perf_counter()
        for k in range(rounds):
            got = asyncio.run(_round(url, n_clients, min_references, seed * 1000 + k))
            verdicts.update(v for v, _ in got)
            latencies += [t for _, t in got]
            if k == 0:
                out["rss_after_first_mb"] = _rss_mb()
        out["wall_s"] = time.perf_counter() - t0
    out["rss_after_last_mb"] = _rss_mb()
    out["verdicts"] = dict(verdicts)
    out["sent"] = n_clients * rounds
    out["lost"] = sum(n for v, n in verdicts.items() if v.startswith("lost"))
    out["p50_s"] = statistics.median(latencies)
    out["p99_s"] = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    out["requests_per_s"] = out["sent"] / out["wall_s"]
    out["injected"] = dict(backend.injected)
    out["upstream_calls"] = len(backend.calls)
    return out


def overhead(*, latency_s: float = 0.05, repeats: int = 20) -> dict[str, list[float]]:
    """Served Self-MoA request time vs the critical path and the sum of its upstream calls."""
    import httpx

    client = ManagedClient(MockClient(delay_s=latency_s), max_concurrency=16)
    times: dict[str, list[float]] = {"served": [], "critical": [], "sum": []}
    with running(build_app([self_moa()], client)) as url, httpx.Client(timeout=60) as c:
        for i in range(repeats + 1):
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"q{i}"}]}
            t = time.perf_counter()
            x = c.post(f"{url}/chat/completions", json=body).json()["x_moa"]
            served = time.perf_counter() - t
            if i == 0:
                continue  # warm-up
            refs = [r["latency_s"] for r in x["references"]]
            final = [cl["latency_s"] for cl in x["calls"]]
            times["served"].append(served)
            times["critical"].append(max(refs) + max(final))
            times["sum"].append(sum(refs) + sum(final))
    return times


def run(*, quick: bool = False, repeats: int = 3) -> list[Any]:
    """Result rows for ``python -m benchmarks`` (overhead ratios; the load test as a note)."""
    from ._common import Paired

    t = overhead(repeats=5 if quick else 20)
    rows = []
    for base, label in (("critical", "critical path of upstream calls"), ("sum", "their sum")):
        p = Paired(base=t[base], cand=t["served"])
        over_ms = 1000 * statistics.median(
            s - c for s, c in zip(t["served"], t["critical"], strict=False)
        )
        rows.append(
            p.result(
                section="serve",
                benchmark="served Self-MoA (6 + 1 calls, mock 50 ms each)",
                size="1 request at a time",
                baseline=label,
                candidate="served request (HTTP)",
                note=f"overhead over the critical path {over_ms:.1f} ms (median)",
            )
        )
    load = load_test(n_clients=50 if quick else 200, rounds=1 if quick else 3)
    rows[0].note += (
        f"; load {load['clients']} clients x {load['rounds']}: {load['verdicts']}, lost "
        f"{load['lost']}, {load['requests_per_s']:.0f} req/s, p99 {load['p99_s']:.2f} s"
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_serve.py", description=__doc__)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20, help="requests timed for the overhead")
    args = p.parse_args(argv)
    t = overhead(repeats=args.repeats)
    med = {k: statistics.median(v) for k, v in t.items()}
    print(
        f"overhead: served {1000 * med['served']:.1f} ms; critical path "
        f"{1000 * med['critical']:.1f} ms; sum of calls {1000 * med['sum']:.1f} ms; "
        f"overhead {1000 * (med['served'] - med['critical']):.1f} ms"
    )
    print(json.dumps(load_test(n_clients=args.clients, rounds=args.rounds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
