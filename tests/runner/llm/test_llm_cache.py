"""ResponseCache: sample-aware keys, persistence after SIGKILL, thread safety."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from qdanalysis.errors import ConfigError
from qdanalysis.runner.llm import ChatRequest, ChatResponse, ResponseCache

REQ = ChatRequest(model="m", messages=({"role": "user", "content": "q"},), temperature=0.7, seed=1)
REPO_ROOT = Path(__file__).resolve().parents[3]


def test_n_samples_at_positive_temperature_stay_n_entries(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    for k in range(6):
        req = dataclasses.replace(REQ, sample_index=k)
        cache.put("e", req, ChatResponse(text=f"sample {k}", model="m"))
    assert len(cache) == 6
    texts = [cache.get("e", dataclasses.replace(REQ, sample_index=k)).text for k in range(6)]
    assert texts == [f"sample {k}" for k in range(6)]


@pytest.mark.parametrize(
    "change",
    [
        {"sample_index": 1},
        {"seed": 2},
        {"temperature": 0.0},
        {"top_p": 0.9},
        {"max_tokens": 10},
        {"stop": ("\n",)},
        {"model": "other"},
        {"messages": ({"role": "user", "content": "other"},)},
    ],
)
def test_every_output_field_is_in_the_key(change: dict) -> None:  # type: ignore[type-arg]
    assert ResponseCache.key("e", REQ) != ResponseCache.key("e", dataclasses.replace(REQ, **change))


def test_endpoint_is_in_the_key() -> None:
    assert ResponseCache.key("a", REQ) != ResponseCache.key("b", REQ)


def test_roundtrip_keeps_fields_and_marks_cached(tmp_path: Path) -> None:
    resp = ChatResponse(
        text="t",
        model="m",
        finish_reason="length",
        prompt_tokens=3,
        completion_tokens=4,
        latency_s=0.5,
        extra={"n_batch": 2},
    )
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("e", REQ, resp)
        assert cache.get("e", REQ) == dataclasses.replace(resp, cached=True)
    with pytest.raises(ConfigError, match="closed"):
        cache.get("e", REQ)


def test_wal_mode_and_folder_path_rejected(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put("e", REQ, ChatResponse(text="t", model="m"))
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(ConfigError, match="expected a file path"):
        ResponseCache(tmp_path)


def test_readable_after_writer_is_sigkilled(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    flag = tmp_path / "written"
    code = textwrap.dedent(
        f"""
        import pathlib, time
        from qdanalysis.runner.llm import ChatRequest, ChatResponse, ResponseCache
        cache = ResponseCache({str(path)!r})
        req = ChatRequest(model="m", messages=({{"role": "user", "content": "q"}},))
        for k in range(5):
            cache.put("e", ChatRequest(model="m", messages=req.messages, sample_index=k),
                      ChatResponse(text=f"s{{k}}", model="m"))
        pathlib.Path({str(flag)!r}).write_text("ok")
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"writer did not finish (exit code {proc.returncode})")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cache = ResponseCache(path)
    assert len(cache) == 5
    got = [
        cache.get("e", ChatRequest(model="m", messages=REQ.messages, sample_index=k)).text
        for k in range(5)
    ]
    assert got == [f"s{k}" for k in range(5)]


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for k in range(25):
                req = dataclasses.replace(REQ, sample_index=t * 100 + k)
                cache.put("e", req, ChatResponse(text=f"{t}-{k}", model="m"))
                if cache.get("e", req).text != f"{t}-{k}":
                    raise AssertionError("mismatch")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(cache) == 100
