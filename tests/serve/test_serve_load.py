"""Load on loopback: 200 concurrent clients, an upstream failing with 429, 500 and hangs.

Every request is answered (with at least ``min_references`` references) or refused with an
OpenAI error JSON (429/502/503/504); none is lost; RSS after the last round stays near RSS
after the first (no growth per request). The numbers for the README come from
``benchmarks/bench_serve.py``, which this test shares.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_serve import load_test


@pytest.mark.slow
def test_200_concurrent_clients_with_upstream_faults_lose_nothing() -> None:
    got = load_test(n_clients=200, rounds=2, faults=(0.08, 0.08, 0.03), seed=1)
    v = got["verdicts"]
    assert got["lost"] == 0, v
    assert sum(v.values()) == got["sent"] == 400
    assert v.get("answered", 0) > 0
    assert set(v) <= {"answered", "refused 429", "refused 502", "refused 503", "refused 504"}
    assert min(got["injected"].get(k, 0) for k in ("429", "500", "hang")) > 0
    assert got["rss_after_last_mb"] - got["rss_after_first_mb"] < 64, got
