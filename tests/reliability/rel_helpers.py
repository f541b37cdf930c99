"""Helpers of the reliability suite: hostile rows, a tiny real outputs table, CLI arguments."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"

#: A valid proposer row; hostile inputs are one change away from it.
GOOD_ROW: dict[str, Any] = {
    "dataset": "toy",
    "question_id": "q1",
    "model": "m1",
    "sample_index": 0,
    "output": "The answer is 4.",
    "answer": "4",
    "answer_key": "4",
    "correct": 1,
}


def row(**changes: Any) -> dict[str, Any]:
    """GOOD_ROW with ``changes`` applied; a value of ``...`` removes the field."""
    r = dict(GOOD_ROW)
    for k, v in changes.items():
        if v is ...:
            r.pop(k, None)
        else:
            r[k] = v
    return r


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def real_rows(name: str, n_questions: int, *, short: bool) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    qids: list[str] = []
    for r in rows:
        if r["question_id"] not in qids:
            qids.append(r["question_id"])
    keep = set(qids[:n_questions])
    out = [r for r in rows if r["question_id"] in keep]
    if short:  # keep MiniLM fast: the first 200 characters still come from the real output
        out = [dict(r, output=r["output"][:200]) for r in out]
    return out


def cli_args(outputs: Path | str, out_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    """Fast fit-CLI arguments on a small input."""
    return [
        "--outputs",
        str(outputs),
        "--out-dir",
        str(out_dir),
        "--cache-dir",
        str(cache_dir),
        "--n-proposers",
        "3",
        "--max-configs",
        "24",
        "--no-progress",
        "--no-figures",
        "--device",
        "cpu",
        *extra,
    ]


def listing(d: Path) -> list[str]:
    """Every path under ``d`` (relative), hidden ones included; [] when ``d`` is absent."""
    if not d.exists():
        return []
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def tree_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) if d.exists() else 0
