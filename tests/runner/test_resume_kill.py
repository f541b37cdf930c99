"""A run killed with SIGKILL midway resumes without asking any stored key again."""

import json
import signal
import subprocess
import sys
import time

from qdanalysis.runner.store import RunStore

SCRIPT = r"""
import asyncio, sys
from qdanalysis.runner.moa import method_configs, run_experiment
from qdanalysis.runner.store import RunStore
from qdanalysis.runner.tasks import Question
from qdanalysis.testing import MockClient
qs = [Question(dataset="d", question_id=f"q{i}", question=f"{i}+1?", reference=str(i + 1),
               task="math") for i in range(4)]
cfgs = (method_configs("self_moa", proposers=["a"], aggregator="agg", n_samples=4)
        + method_configs("mixed_moa", proposers=["a", "b"], aggregator="agg"))
client = MockClient(delay_s=float(sys.argv[3]), log_path=sys.argv[2])
asyncio.run(run_experiment(qs, cfgs, client=client, store=RunStore(sys.argv[1]), progress=False))
"""


def _log(path):
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_sigkill_then_resume_makes_no_duplicate_requests(tmp_path):
    store_dir, log = tmp_path / "store", tmp_path / "calls.jsonl"
    cmd = [sys.executable, "-c", SCRIPT, str(store_dir), str(log)]
    rows = store_dir / "rows.jsonl"
    proc = subprocess.Popen([*cmd, "0.5"])
    try:
        deadline = time.monotonic() + 60
        # kill once the pool (20 rows) is stored and the aggregator calls are in flight
        while (not rows.exists() or len(rows.read_text().splitlines()) < 20) and (
            proc.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = _log(log)
    stored = RunStore(store_dir).done_keys()
    assert 0 < len(stored) < 4 * 5 + 4 * 2  # killed midway
    n_first = len(first)
    subprocess.run([*cmd, "0"], check=True)
    second = _log(log)[n_first:]
    total_rows = len(RunStore(store_dir).done_keys())
    # every row is made exactly once over both runs, apart from calls in flight at the kill
    assert len(second) == total_rows - len(stored)
    stored_keys = {(k[2], k[3], k[1]) for k in stored}
    assert len({(r["model"], r["sample_index"], r["key"]) for r in second}) == len(second)
    asked_again = [r for r in second if r["key"] in {x["key"] for x in first}]
    # only requests whose rows were not stored (in flight at the kill) may be asked again
    assert len(asked_again) <= len(first) - len(stored)
    assert stored_keys
