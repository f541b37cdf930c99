"""SIGKILL during aggregation, then a rerun: no finished request is asked again, and the tables
equal those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qdanalysis.cli import study as study_cli
from qdanalysis.runner.store import RunStore

from .conftest import call_log, mock_models

REPO = Path(__file__).resolve().parents[2]


def _aggregator_rows(rows: Path) -> int:
    """LLM aggregator rows stored (offline baselines have no request)."""
    if not rows.exists():
        return 0
    lines = rows.read_text().splitlines()
    return sum('"role": "aggregator"' in x and '"request_key": "' in x for x in lines)


def _call_rows(store: Path) -> int:
    """Stored ok rows that a call made (proposer and LLM aggregator rows)."""
    return sum(
        1
        for r in RunStore(store).rows()
        if r["role"] == "proposer" or (r.get("request_key") and r["role"] == "aggregator")
    )


@pytest.mark.slow
def test_sigkill_during_aggregation_then_rerun(write_study, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    toml = write_study("killed", models=mock_models(log, delay_s=0.3), limit=4)
    out = toml.parent / "out"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "qdanalysis.study", str(toml), "--no-progress", "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _aggregator_rows(out / "store" / "rows.jsonl") < 3:
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = call_log(log)
    stored = _call_rows(out / "store")
    assert 24 < stored < 24 + 40  # the pool is stored, the aggregation half done
    in_flight = len(first) - stored
    assert study_cli.main([str(toml), "--no-progress"]) == 0
    second = call_log(log)[len(first) :]
    total = _call_rows(out / "store")
    assert total == 24 + 40
    assert len({c["key"] for c in second}) == len(second)  # nothing asked twice in the rerun
    asked_again = {c["key"] for c in second} & {c["key"] for c in first}
    assert len(asked_again) <= in_flight  # only calls in flight at the kill
    assert len(second) <= total - stored

    # the same tables as an uninterrupted run of the same study
    clean = write_study("clean", models=mock_models(tmp_path / "clean.jsonl"), limit=4)
    assert study_cli.main([str(clean), "--no-progress"]) == 0
    for name in ("qd_table.csv", "coefficients.csv", "run_methods.csv", "uncertainty.csv"):
        a = (out / "fit" / name).read_text()
        b = (clean.parent / "out" / "fit" / name).read_text()
        assert a == b, name
