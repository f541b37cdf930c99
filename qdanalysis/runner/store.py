"""RunStore: an append-only JSONL store of runner rows, in the outputs schema, for resuming.

Every completed call (or error) is one JSON line in ``<dir>/rows.jsonl``, written and fsynced per
batch; nothing is ever rewritten. A row's key is :data:`ROW_KEY`; the latest line of a key wins,
so an ``error`` row is superseded when a resumed run succeeds. After a crash a truncated last
line is dropped (with a warning) when the store is opened.

Neighbours: :mod:`qdanalysis.runner.moa` appends rows; :func:`RunStore.write_outputs` writes the
final
outputs table that :func:`qdanalysis.outputs.load_outputs` reads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_write
from ..errors import DataError, DataWarning

__all__ = ["OUTPUT_COLUMNS", "ROW_KEY", "RowKey", "RunStore", "row_key"]

log = logging.getLogger(__name__)

#: Columns identifying a runner row (the outputs key plus the run key columns).
ROW_KEY = ("dataset", "question_id", "model", "sample_index", "config_id", "role", "layer", "step")
RowKey = tuple[Any, ...]

#: Column order of the written outputs table (other columns follow, sorted).
OUTPUT_COLUMNS = (
    "dataset",
    "question_id",
    "question",
    "reference",
    "model",
    "temperature",
    "sample_index",
    "output",
    "answer",
    "answer_key",
    "correct",
    "role",
    "layer",
    "config_id",
    "config",
    "step",
    "is_final",
    "n_references",
    "shown",
    "prompt_id",
    "seed",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "cached",
    "status",
    "error",
    "created_at",
)


def row_key(row: Mapping[str, Any]) -> RowKey:
    """The :data:`ROW_KEY` tuple of a row (missing columns count as None)."""
    return tuple(row.get(c) for c in ROW_KEY)


class RunStore:
    """Append-only JSONL store of runner rows.

    Parameters
    ----------
    directory
        Created if missing; rows live in ``directory/rows.jsonl``.

    Examples
    --------
    >>> import tempfile
    >>> s = RunStore(tempfile.mkdtemp())
    >>> s.append([{"dataset": "d", "question_id": "q", "model": "m", "sample_index": 0,
    ...            "role": "proposer", "layer": 0, "status": "ok", "output": "x", "correct": 1.0}])
    >>> len(s.done_keys()), len(s.read())
    (1, 1)
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "rows.jsonl"
        self._lock = threading.Lock()
        self._latest: dict[RowKey, dict[str, Any]] = {}
        self._recover_and_load()

    def __repr__(self) -> str:
        return f"RunStore({str(self.directory)!r}, rows={len(self._latest)})"

    def _recover_and_load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # A complete file ends with "\n", so the last element is b"".
        tail = lines[-1]
        good_end = len(data) - len(tail)
        if tail.strip():
            try:
                json.loads(tail)
                complete = True
            except json.JSONDecodeError:
                complete = False
            if not complete:
                warnings.warn(
                    f"{self.path}: dropped a truncated last line ({len(tail)} bytes), left by an "
                    "interrupted run; its call will be made again.",
                    DataWarning,
                    stacklevel=3,
                )
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_end)
                    fh.flush()
                    os.fsync(fh.fileno())
                lines = lines[:-1]
            else:
                with open(self.path, "ab") as fh:
                    fh.write(b"\n")
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"expected a JSON row; got malformed JSON ({exc.msg}) in the middle of the "
                    "store. Remove or repair this line.",
                    path=self.path,
                    line=lineno,
                ) from exc
            self._latest[row_key(row)] = row

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows as one batch (one write, flush and fsync)."""
        batch = [dict(r) for r in rows]
        if not batch:
            return
        text = "".join(
            json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in batch
        )
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            for r in batch:
                self._latest[row_key(r)] = r

    def get(self, key: RowKey, *, status: str | None = "ok") -> dict[str, Any] | None:
        """The latest row of ``key`` (with that status), or None."""
        row = self._latest.get(key)
        if row is None or (status is not None and row.get("status") != status):
            return None
        return row

    def done_keys(self) -> set[RowKey]:
        """Keys whose latest row has ``status="ok"`` (a resumed run skips these)."""
        return {k for k, r in self._latest.items() if r.get("status") == "ok"}

    def rows(self, *, status: str | None = "ok") -> list[dict[str, Any]]:
        """The latest row per key, in first-append order, filtered by status (None: all)."""
        return [r for r in self._latest.values() if status is None or r.get("status") == status]

    def read(self, *, status: str | None = "ok") -> pd.DataFrame:
        """The latest row per key as a DataFrame (columns in :data:`OUTPUT_COLUMNS` order)."""
        df = pd.DataFrame.from_records(self.rows(status=status))
        cols = [c for c in OUTPUT_COLUMNS if c in df.columns]
        return df[cols + sorted(c for c in df.columns if c not in cols)]

    def write_outputs(self, path: str | Path) -> Path:
        """Write the ``ok`` rows as the final outputs table (JSONL), atomically.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        with atomic_write(path, encoding="utf-8") as fh:
            for r in self.rows(status="ok"):
                ordered = {c: r.get(c) for c in OUTPUT_COLUMNS if c in r}
                ordered.update({k: v for k, v in sorted(r.items()) if k not in ordered})
                fh.write(json.dumps(ordered, ensure_ascii=False, default=_json_default) + "\n")
        return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"RunStore: cannot store a {type(value).__name__}: {value!r}")
