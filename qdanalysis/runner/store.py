"""RunStore: an append-only JSONL store of runner rows, in the outputs schema, for resuming.

Every completed call (or error) is one JSON line in ``<dir>/rows.jsonl``, written and fsynced per
batch; nothing is ever rewritten. ``<dir>/run.json`` (the manifest) records the settings the rows
were made with; :meth:`RunStore.claim` refuses a run with other settings. A row's key is
:data:`ROW_KEY`; the latest line of a key wins, so an ``error`` row is superseded when a resumed
run succeeds. After a crash a truncated last line is dropped (with a warning) when the store is
opened.

Neighbours: :mod:`qdanalysis.runner.moa` appends rows; :func:`RunStore.write_outputs` writes the
final outputs table that :func:`qdanalysis.outputs.load_outputs` reads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_write
from ..errors import ConfigError, DataWarning
from ..schema import RUNNER_COLUMNS
from ._jsonl import json_lines

__all__ = [
    "MANIFEST",
    "OUTPUT_COLUMNS",
    "ROW_KEY",
    "RowKey",
    "RunStore",
    "describe_differences",
    "row_key",
]

log = logging.getLogger(__name__)

#: Columns identifying a runner row (the outputs key plus the run key columns).
ROW_KEY = ("dataset", "question_id", "model", "sample_index", "config_id", "role", "layer", "step")
RowKey = tuple[Any, ...]

#: Column order of the written outputs table (other columns follow, in first-seen order).
OUTPUT_COLUMNS = RUNNER_COLUMNS
#: The run manifest, beside the rows: the settings every stored row was made with.
MANIFEST = "run.json"


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
        what = "a JSON row in the middle of the store"
        fix = "Remove or repair this line."
        for _, row in json_lines(lines, path=self.path, what=what, fix=fix):
            self._latest[row_key(row)] = row

    def claim(
        self, identity: Mapping[str, Any], *, record: Mapping[str, Any] | None = None
    ) -> None:
        """Bind the store to the settings of a run, or fail if its rows were made otherwise.

        A run into a store without rows writes ``identity`` (and ``record``, kept for the
        reader) to the manifest; a run into a store with rows must bring an equal ``identity``.

        Parameters
        ----------
        identity
            JSON-ready settings that can change a stored row (e.g. the run options' identity
            and the client's endpoint).
        record
            Anything else worth keeping (e.g. the execution options of the first run).

        Raises
        ------
        ConfigError
            If the manifest holds other settings (each differing one is named, stored value
            then new value), or the store has rows but no manifest (their settings are unknown).
        """
        new = json.loads(json.dumps(dict(identity), default=_json_default))
        path = self.directory / MANIFEST
        if not path.exists() or not self._latest:  # nothing stored yet: (re)bind the store
            if self._latest:
                raise ConfigError(
                    f"RunStore({str(self.directory)!r}): expected a run manifest ({MANIFEST}) "
                    f"beside its {len(self._latest)} rows; got none, so the settings they were "
                    "made with are unknown and they cannot be reused safely. Write this run to "
                    "a new store directory."
                )
            manifest = {"format": 1, "identity": new, "record": dict(record or {})}
            with atomic_write(path, encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2, sort_keys=True, default=_json_default)
                fh.write("\n")
            return
        old = json.loads(path.read_text(encoding="utf-8")).get("identity", {})
        diff = describe_differences(old, new)
        if diff:
            raise ConfigError(
                f"RunStore({str(self.directory)!r}): expected the settings its rows were made "
                f"with; got {len(diff)} different: {'; '.join(diff)} (stored -> this run). A "
                "stored row is reused only when every setting that made it is equal: write "
                "this run to a new store directory, or rerun with the stored settings."
            )

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

    def write_outputs(
        self, path: str | Path, *, keep: Callable[[Mapping[str, Any]], bool] | None = None
    ) -> Path:
        """Write the ``ok`` rows (those ``keep`` accepts, if given) as an outputs table (JSONL),
        atomically.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        with atomic_write(path, encoding="utf-8") as fh:
            for r in self.rows(status="ok"):
                if keep is not None and not keep(r):
                    continue
                ordered = {c: r.get(c) for c in OUTPUT_COLUMNS if c in r}
                ordered.update({k: v for k, v in sorted(r.items()) if k not in ordered})
                fh.write(json.dumps(ordered, ensure_ascii=False, default=_json_default) + "\n")
        return path


def describe_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """``"name: old -> new"`` for every differing leaf of two nested settings mappings."""
    out: list[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += describe_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"RunStore: cannot store a {type(value).__name__}: {value!r}")
