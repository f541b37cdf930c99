"""SIGKILL at random points, restart: no finished output lost, none asked again, same table."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import FaultServer, fault_server
from rr_helpers import comparable, finished_sample_keys, store_lines, write_questions

REPO = Path(__file__).resolve().parents[2]


def _cmd(base_url: str, q: Path, out: Path, cache: Path | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "qdanalysis.run",
        "--questions",
        str(q),
        "--method",
        "self_moa",
        "--proposers",
        "a",
        "--aggregator",
        "agg",
        "--n-samples",
        "4",
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--api-key-env",
        "",
        "--out",
        str(out),
        "--concurrency",
        "2",
        "--max-tokens",
        "32",
        "--no-progress",
        "-q",
    ]
    return [*cmd, "--cache", str(cache)] if cache is not None else cmd


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def _cache_ok(path: Path) -> int:
    """Rows in the sqlite cache after an integrity check (raises if unreadable)."""
    if not path.exists():
        return 0
    con = sqlite3.connect(path, timeout=10)
    try:
        (check,) = con.execute("PRAGMA integrity_check").fetchone()
        if check != "ok":
            raise AssertionError(f"cache integrity: {check}")
        return int(con.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    finally:
        con.close()


def _kill_and_resume(
    srv: FaultServer, cmd: list[str], out: Path, cache: Path | None, n_kills: int, seed: int
) -> dict[str, int]:
    rng = random.Random(seed)
    finished: set[str] = set()  # sample keys stored ok before the latest kill
    stored_rows: dict[tuple, str] = {}  # row key -> output, of every row stored before a kill
    kills = truncated_tails = 0
    dup_finished = repeated_in_flight = 0
    while True:
        start = len(srv.snapshot())
        asked_before = {k for a in srv.snapshot() for k in a.sample_keys}
        proc = subprocess.Popen(
            cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if kills < n_kills:
                deadline = time.monotonic() + 60
                while len(srv.snapshot()) == start and proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the run never reached the server")
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.3))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        new = srv.snapshot()[start:]
        for a in new:
            for k in a.sample_keys:
                dup_finished += k in finished
                repeated_in_flight += k in asked_before and k not in finished
        rows, cut = store_lines(out / "rows.jsonl")  # raises on a broken line mid-file
        truncated_tails += cut
        if cache is not None:
            _cache_ok(cache)
        if rc == 0:
            break
        assert rc == -signal.SIGKILL
        kills += 1
        finished |= finished_sample_keys(rows)
        for r in rows:
            if r["status"] == "ok":
                stored_rows[(r["question_id"], r["role"], r["sample_index"], r["model"])] = r[
                    "output"
                ]
    final, _ = store_lines(out / "rows.jsonl")
    latest = {(r["question_id"], r["role"], r["sample_index"], r["model"]): r for r in final}
    lost = sum(
        1
        for k, text in stored_rows.items()
        if latest.get(k, {}).get("status") != "ok" or latest[k]["output"] != text
    )
    return {
        "kills": kills,
        "rows_lost": lost,
        "duplicate_requests_of_finished": dup_finished,
        "repeated_in_flight_samples": repeated_in_flight,
        "truncated_tails": truncated_tails,
    }


def _crash_run(tmp_path: Path, n_kills: int, n_questions: int, seed: int, cache: bool) -> dict:
    q = write_questions(tmp_path / "q.jsonl", n_questions)
    lat = lambda a: 0.03 + (a.index * 7919 % 100) / 1000  # noqa: E731 - 30-130 ms, deterministic
    with fault_server(latency_s=lat) as srv:
        ref = tmp_path / "ref"
        subprocess.run(
            _cmd(srv.base_url, q, ref, None),
            env=_env(),
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
        out, cache_path = tmp_path / "killed", (tmp_path / "cache.sqlite" if cache else None)
        stats = _kill_and_resume(
            srv, _cmd(srv.base_url, q, out, cache_path), out, cache_path, n_kills, seed
        )
    want, _ = store_lines(ref / "outputs.jsonl")
    got, _ = store_lines(out / "outputs.jsonl")
    assert len(got) == n_questions * 5
    assert comparable(got).equals(comparable(want))
    assert stats["rows_lost"] == 0
    assert stats["duplicate_requests_of_finished"] == 0
    return stats


def _book(figures: dict, stats: dict) -> None:
    board = figures.setdefault("crash", {})
    for k, v in stats.items():
        board[k] = board.get(k, 0) + v


def test_three_kills_resume_to_the_same_table(tmp_path: Path, figures: dict) -> None:
    stats = _crash_run(tmp_path, n_kills=3, n_questions=4, seed=11, cache=True)
    assert stats["kills"] >= 1
    _book(figures, stats)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cache", "n_kills"), [(True, 15), (False, 8)], ids=["cache", "store-only"]
)
def test_many_kills_resume_to_the_same_table(
    tmp_path: Path, figures: dict, cache: bool, n_kills: int
) -> None:
    stats = _crash_run(tmp_path, n_kills=n_kills, n_questions=14, seed=5 + n_kills, cache=cache)
    assert stats["kills"] >= n_kills // 2
    _book(figures, stats)
