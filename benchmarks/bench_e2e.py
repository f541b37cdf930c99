"""End to end: ``python -m qdanalysis.fit`` on 300 configurations x 1,319 questions.

The outputs table is the shipped GSM8K file (150 questions x 12 outputs, real texts) with its
questions replicated under new ids up to 1,319 (GSM8K's test size); texts repeat, so the
embedding cache covers every row after one cold run. The cold run (empty cache: model load
and embedding) is the baseline of the cache ratio; warm runs are timed against the goal.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import Result, goal_met

SECTION = "end to end"
ROOT = Path(__file__).resolve().parent.parent
# Peak RSS from VmHWM (ru_maxrss would carry the forking parent's peak across exec on Linux).
_CHILD = (
    "import sys\n"
    "from qdanalysis.cli.fit import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
    "print('MAXRSS_KB', hwm[0].split()[1] if hwm else 'nan')\n"
    "sys.exit(rc)\n"
)


def write_outputs(path: Path, n_questions: int) -> int:
    with gzip.open(ROOT / "data" / "rereading_gsm8k.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    qids = sorted({r["question_id"] for r in rows}, key=lambda q: int(q.split("/")[-1]))
    by_q: dict[str, list[dict]] = {}
    for r in rows:
        by_q.setdefault(r["question_id"], []).append(r)
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for k in range(n_questions):
            src = qids[k % len(qids)]
            rep = k // len(qids)
            for r in by_q[src]:
                r2 = dict(r, question_id=src if rep == 0 else f"{src}-r{rep}")
                out.write(json.dumps(r2) + "\n")
                n += 1
    return n


def _run_fit(outputs: Path, out_dir: Path, cache_dir: Path, n_configs: int) -> tuple[float, float]:
    cmd = [
        sys.executable,
        "-c",
        _CHILD,
        "--outputs",
        str(outputs),
        "--out-dir",
        str(out_dir),
        "--cache-dir",
        str(cache_dir),
        "--max-configs",
        str(n_configs),
        "--no-progress",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"fit failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = [ln for ln in proc.stdout.splitlines() if ln.startswith("MAXRSS_KB")]
    return wall, float(rss[-1].split()[1]) / 1024 if rss else float("nan")


def run(*, quick: bool, repeats: int) -> list[Result]:
    n_q, n_c = (10, 20) if quick else (1_319, 300)
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        outputs = tmpd / "gsm8k_1319.jsonl"
        n_rows = write_outputs(outputs, n_q)
        cold, cold_rss = _run_fit(outputs, tmpd / "out0", tmpd / "cache", n_c)
        print(f"  fit cold (embeds, empty cache): {cold:.1f} s, {cold_rss:.0f} MiB", flush=True)
        warm = []
        rss = []
        for i in range(repeats):
            w, m = _run_fit(outputs, tmpd / f"out{i + 1}", tmpd / "cache", n_c)
            warm.append(w)
            rss.append(m)
            print(f"  fit warm: {w:.1f} s, {m:.0f} MiB", flush=True)
        same = (tmpd / "out0" / "qd_table.csv").read_bytes() == (
            tmpd / "out1" / "qd_table.csv"
        ).read_bytes()
    size = f"{n_c} configs x {n_q:,} questions ({n_rows:,} output rows, GSM8K replicated)"
    med = statistics.median(warm)
    r_goal = Result(
        section=SECTION,
        benchmark="fit CLI, cached embeddings",
        size=size,
        baseline="python startup (python -c pass)",
        candidate="python -m qdanalysis.fit (warm cache)",
        baseline_s=_startup(),
        candidate_s=med,
        ratio=float("nan"),
        ratio_min=float("nan"),
        ratio_max=float("nan"),
        repeats=repeats,
        goal="< 10 s",
        met=goal_met(med, 10, higher=False),
        memory=f"peak RSS {statistics.median(rss):.0f} MiB",
        note=f"absolute wall time, min {min(warm):.1f} s, max {max(warm):.1f} s",
    )
    r_cache = Result(
        section=SECTION,
        benchmark="fit CLI, cache second run",
        size=size,
        baseline="first run (empty cache)",
        candidate="second run (warm cache)",
        baseline_s=cold,
        candidate_s=med,
        ratio=cold / med,
        ratio_min=cold / max(warm),
        ratio_max=cold / min(warm),
        repeats=repeats,
        goal=">= 20x",
        met=goal_met(cold / med, 20),
        agreement="identical qd_table.csv" if same else "qd_table.csv differs",
        memory=f"peak RSS cold {cold_rss:.0f} MiB, warm {statistics.median(rss):.0f} MiB",
        note="one cold run",
    )
    return [r_goal, r_cache]


def _startup() -> float:
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)
