"""Helpers of the runner reliability suite: store lines, tables to compare, sample-key tags."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from qdanalysis.runner.store import ROW_KEY

#: Columns that legitimately differ between two runs of the same command: timing, cache hits,
#: messages of retried errors, and per-sample completion tokens, which an OpenAI-style server
#: reports only per request, so they are known for a sample drawn alone and unknown for one
#: drawn in an ``n`` batch (a resumed run re-batches what is left). ``request_key`` and
#: ``request`` name the endpoint, and two test servers listen on two ports.
VOLATILE = (
    "latency_s",
    "created_at",
    "cached",
    "error",
    "completion_tokens",
    "request_key",
    "request",
)

_TAG = re.compile(r"\[sk:([0-9a-f]{16})\]")


def store_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Every complete row of a ``rows.jsonl`` and whether its last line was cut by a kill.

    Raises ``json.JSONDecodeError`` for a broken line anywhere but at the end (a half row).
    """
    if not path.exists():
        return [], False
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    rows = [json.loads(x) for x in lines if x.strip()]
    truncated = False
    if tail.strip():
        try:
            rows.append(json.loads(tail))
        except json.JSONDecodeError:
            truncated = True
    return rows, truncated


def finished_sample_keys(rows: list[dict[str, Any]]) -> set[str]:
    """Sample keys whose answers are stored in ok rows (tags in the outputs)."""
    out: set[str] = set()
    for r in rows:
        if r.get("status") == "ok":
            m = _TAG.findall(r.get("output") or "")
            if m:
                out.add(m[-1])  # aggregator outputs quote references; their own tag comes last
    return out


def comparable(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The latest ok row per key, without volatile columns, sorted by key."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        latest[tuple(r.get(c) for c in ROW_KEY)] = r
    ok = [
        {k: v for k, v in r.items() if k not in VOLATILE}
        for r in latest.values()
        if r.get("status") == "ok"
    ]
    df = pd.DataFrame.from_records(ok)
    df = df[sorted(df.columns)]
    keys = [c for c in ROW_KEY if c in df.columns]
    return df.sort_values(keys, key=lambda s: s.astype(str)).reset_index(drop=True)


def write_questions(path: Path, n: int) -> Path:
    """``n`` small math questions as a JSONL question file."""
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "dataset": "toy",
                        "question_id": f"toy/{i}",
                        "question": f"What is {i} mod 4?",
                        "reference": str(i % 4),
                        "task": "math",
                    }
                )
                + "\n"
            )
    return path
