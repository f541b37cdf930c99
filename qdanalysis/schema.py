"""Rows of the outputs table as the runner writes them: the columns and their one builder.

:mod:`qdanalysis.outputs` defines and validates the columns every outputs table has; runner rows
add the run columns below. Every runner row (a proposer sample, an intermediate layer output, an
aggregator call, an offline vote, a failure) is built by :func:`output_row`, so every row of a
run has the same columns in the same order.

Neighbours: :mod:`qdanalysis.runner.moa` builds rows with :func:`output_row`;
:mod:`qdanalysis.runner.store` stores and writes them; :func:`qdanalysis.outputs.load_outputs`
reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import ConfigError
from .outputs import KEY_COLUMNS, OUTPUTS_SCHEMA, RUN_KEY_COLUMNS

__all__ = ["ROLES", "RUNNER_COLUMNS", "STATUSES", "output_row"]

ROLES = ("proposer", "aggregator")
STATUSES = ("ok", "error")

#: Column order of runner rows: the outputs table's columns, then the run columns.
RUNNER_COLUMNS: tuple[str, ...] = (
    *OUTPUTS_SCHEMA,
    "extraction",
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
    "request_key",
    "request",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "cached",
    "status",
    "error",
    "created_at",
)

_DEFAULTS: dict[str, Any] = dict.fromkeys(RUNNER_COLUMNS) | {"output": "", "cached": False}
_REQUIRED = (*KEY_COLUMNS, "question", "reference", *RUN_KEY_COLUMNS[1:3], "status")


def output_row(fields: Mapping[str, Any], /, **more: Any) -> dict[str, Any]:
    """One runner row with every column of :data:`RUNNER_COLUMNS` (null where not given).

    Parameters
    ----------
    fields, **more
        Column values (``more`` wins on a clash). Required: ``dataset, question_id, question,
        reference, model, sample_index, role, layer, status``. Columns outside
        :data:`RUNNER_COLUMNS` (e.g. ``judge_output``) follow, in the order given.
        ``created_at`` defaults to now (UTC, seconds).

    Returns
    -------
    dict
        The row, columns in :data:`RUNNER_COLUMNS` order.

    Raises
    ------
    ConfigError
        If a required column is missing, or ``role``/``status`` is not a known value.

    Examples
    --------
    >>> q = {"dataset": "d", "question_id": "q", "question": "?", "reference": "1"}
    >>> r = output_row(q, model="m", sample_index=0, role="proposer", layer=0, status="ok",
    ...                output="1", correct=1.0)
    >>> list(r)[:4], r["answer"], r["cached"]
    (['dataset', 'question_id', 'question', 'reference'], None, False)
    """
    given = {**fields, **more}
    missing = [c for c in _REQUIRED if c not in given]
    if missing:
        raise ConfigError(f"output_row: expected columns {list(_REQUIRED)}; missing {missing}.")
    for col, allowed in (("role", ROLES), ("status", STATUSES)):
        if given[col] not in allowed:
            raise ConfigError(f"output_row {col}: expected one of {allowed}; got {given[col]!r}.")
    row = _DEFAULTS | given
    if row["created_at"] is None:
        row["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return {c: row[c] for c in RUNNER_COLUMNS} | {
        k: v for k, v in given.items() if k not in _DEFAULTS
    }
