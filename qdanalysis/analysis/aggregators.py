"""Aggregators: the one registry of what turns a configuration's slots into its performance.

An aggregator scores every (configuration, question) pair of a :class:`SlotBlock` (the slots'
``correct`` scores and answer-key codes, handed over by :mod:`qdanalysis.analysis.pairs`) and
says, per configuration, what produced that score (the ``aggregator`` column of every table).
The registry :data:`AGGREGATORS` holds the built-in rules by name:

- ``"plurality_vote"``: the most common answer key, ties split evenly (:mod:`qdanalysis.votes`);
- ``"oracle"``: 1 if any slot is correct, an upper bound on every aggregator;
- ``"llm"``: the final aggregator rows a run recorded in the outputs table (whatever produced
  them: an LLM call, the runner's offline vote, or a single model's own answer).

Any object with a ``name``, ``scores(block)`` and ``label(spec)`` is an :class:`Aggregator`;
:class:`PerformanceTable` wraps a user-supplied table of per-(configuration, question) scores
(:meth:`PerformanceTable.from_file` reads one from CSV, JSONL or Parquet).

Neighbours: :mod:`qdanalysis.votes` (the vote kernels), :mod:`qdanalysis.analysis.pairs` (the
engine that asks an aggregator), :mod:`qdanalysis.analysis.pipeline` (resolves ``"auto"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..configs import ConfigSpec
from ..errors import ConfigError, DataError
from ..outputs import _read_jsonl
from ..votes import oracle_scores, plurality_vote_scores

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "Oracle",
    "PerformanceTable",
    "PluralityVote",
    "RunRows",
    "SlotBlock",
    "final_aggregator_positions",
    "final_aggregator_rows",
    "get_aggregator",
    "spec_aggregator_label",
]

_KEYS = ["config_id", "question_id"]


@dataclass(frozen=True, kw_only=True, eq=False)
class SlotBlock:
    """The slots of a group of configurations (one dataset, one slot count) on its questions."""

    dataset: str
    """The dataset of every pair."""
    config_ids: NDArray[np.object_]
    """``(C,)`` configuration ids."""
    question_ids: NDArray[np.object_]
    """``(Q,)`` question ids, sorted."""
    valid: NDArray[np.bool_]
    """``(C, Q)``: every slot of the pair has an output."""
    correct: NDArray[np.float64]
    """``(C, Q, n)`` the slots' ``correct`` (meaningless where not :attr:`valid`)."""
    codes: NDArray[np.int64]
    """``(C, Q, n)`` answer-key codes, ``-1`` for no answer (see :mod:`qdanalysis.votes`)."""


@runtime_checkable
class Aggregator(Protocol):
    """What scores a configuration on a question from its slots.

    ``scores`` returns a float64 ``(C, Q)`` array in [0, 1] (NaN: no score, the pair is dropped
    from every measure); ``label`` names what produced a configuration's score.
    """

    @property
    def name(self) -> str:
        """The aggregator's name (the ``aggregator`` column unless :meth:`label` says more)."""
        ...

    def scores(self, block: SlotBlock) -> NDArray[np.float64]:
        """Expected score of every pair of ``block``."""
        ...

    def label(self, spec: ConfigSpec) -> str:
        """What produced the performance of configuration ``spec``."""
        ...


class PluralityVote:
    """Plurality vote over answer keys; ties split evenly (exact expectation, no RNG).

    Examples
    --------
    >>> PluralityVote().name
    'plurality_vote'
    """

    name = "plurality_vote"

    def scores(self, block: SlotBlock) -> NDArray[np.float64]:
        """Expected score of the vote per pair (:func:`~qdanalysis.votes.plurality_vote_scores`).

        Raises
        ------
        ConfigError
            If no slot output of the block has an answer key.
        """
        if not (block.codes >= 0).any():
            raise ConfigError(
                f"dataset {block.dataset!r}: plurality_vote needs answer keys; the "
                "'answer_key' column is empty. Fill it (a canonical form of each answer) or "
                "use aggregator='oracle'."
            )
        n = block.codes.shape[2]
        flat = plurality_vote_scores(block.codes.reshape(-1, n), block.correct.reshape(-1, n))
        return flat.reshape(block.valid.shape)

    def label(self, spec: ConfigSpec) -> str:
        """``"plurality_vote"`` for every configuration."""
        return self.name


class Oracle:
    """Any slot correct (the best slot's score): an upper bound on any aggregator."""

    name = "oracle"

    def scores(self, block: SlotBlock) -> NDArray[np.float64]:
        """Best slot score per pair (see :func:`~qdanalysis.votes.oracle_scores`)."""
        n = block.correct.shape[2]
        return oracle_scores(block.correct.reshape(-1, n)).reshape(block.valid.shape)

    def label(self, spec: ConfigSpec) -> str:
        """``"oracle"`` for every configuration."""
        return self.name


def spec_aggregator_label(spec: ConfigSpec) -> str:
    """What a configuration's spec says produced its answers.

    ``llm:<model>`` for an aggregator model call (``llm:<model>(<prompt_id>)`` for prompts other
    than ``moa-v1``), the rule's kind (``plurality_vote``, ``oracle``) for an offline rule, and
    ``none`` for a single-model configuration of one slot (its answer is the model's own).

    Examples
    --------
    >>> from qdanalysis.configs import AggregatorSpec, ProposerSlot
    >>> s = ConfigSpec(method="self_moa", proposers=(ProposerSlot(model="m", sample_index=0),
    ...     ProposerSlot(model="m", sample_index=1)), aggregator=AggregatorSpec(kind="llm",
    ...     model="agg"))
    >>> spec_aggregator_label(s)
    'llm:agg'
    """
    if spec.method == "single" and spec.n_proposers == 1:
        return "none"
    agg = spec.aggregator
    if agg.kind == "llm":
        suffix = "" if agg.prompt_id == "moa-v1" else f"({agg.prompt_id})"
        return f"llm:{agg.model}{suffix}"
    return agg.kind


def _read_performance(path: Path) -> pd.DataFrame:
    """The rows of a performance file with the 1-based ``_line`` of each (CSV line 1: header)."""
    low = path.name.lower()
    if not path.is_file():
        raise DataError(
            "expected a performance file; it does not exist. Check the path.", path=path
        )
    try:
        if low.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            return _read_jsonl(path)
        if low.endswith((".csv", ".csv.gz")):
            # Keys stay text: a config_id of hex digits such as "12e4..." must not become a float.
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            return df.assign(_line=np.arange(len(df)) + 2)
        if low.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
            return df.assign(_line=np.arange(len(df)) + 1)
    except DataError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types
        raise DataError(
            f"could not read the performance table ({type(exc).__name__}: {exc}). Check that it "
            "is a complete CSV, JSONL or Parquet file.",
            path=path,
        ) from exc
    raise DataError(
        f"expected a performance table ending in .csv, .jsonl, .jsonl.gz or .parquet; got "
        f"{path.name!r}. Convert it to one of these.",
        path=path,
    )


def _check_performance_rows(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The validated key and ``performance`` columns of a performance file's rows."""
    key = "config_id" if "config_id" in df.columns else "name"
    want = [key, "question_id", "performance"]
    missing = [c for c in want if c not in df.columns]
    if missing:
        raise DataError(
            "expected columns config_id (or name), question_id and performance (optionally "
            f"dataset); missing {missing}. Present: "
            f"{[c for c in df.columns if not str(c).startswith('_')]}.",
            path=path,
        )
    cols = [c for c in ("dataset", key, "question_id") if c in df.columns]
    for c in cols:
        null = df[c].isna() | (df[c].astype(str).str.strip() == "")
        if null.any():
            line = int(df.loc[null, "_line"].iloc[0])
            raise DataError(
                f"expected a value; got {df.loc[null, c].iloc[0]!r}.",
                path=path,
                line=line,
                column=c,
            )
    perf = pd.to_numeric(df["performance"], errors="coerce")
    bad = ~perf.between(0.0, 1.0)
    if bad.any():
        raise DataError(
            f"expected a number in [0, 1]; got {df.loc[bad, 'performance'].iloc[0]!r}. Scale "
            "scores to [0, 1].",
            path=path,
            line=int(df.loc[bad, "_line"].iloc[0]),
            column="performance",
        )
    out = df[cols].astype(str).assign(performance=perf.astype(np.float64))
    dup = out.duplicated(cols)
    if dup.any():
        raise DataError(
            f"expected one row per {tuple(cols)}; got a second one for "
            f"{tuple(out.loc[dup, cols].iloc[0])!r}. Remove the duplicate.",
            path=path,
            line=int(df.loc[dup, "_line"].iloc[0]),
        )
    return out.reset_index(drop=True)


@dataclass(frozen=True, kw_only=True, eq=False)
class PerformanceTable:
    """A user-supplied score per (configuration, question): any aggregator computed elsewhere.

    Parameters
    ----------
    table
        Columns ``config_id`` (or ``name``, the QD table's configuration name: see
        :meth:`with_config_ids`), ``question_id``, ``performance`` (in [0, 1]) and optionally
        ``dataset``; one row per key. Pairs without a row get no score and are dropped.
    name
        The aggregator's name (the ``aggregator`` column of every table).
    source
        The file the table was read from, if any (:meth:`from_file`).

    Examples
    --------
    >>> t = pd.DataFrame({"config_id": ["c"], "question_id": ["q"], "performance": [0.5]})
    >>> PerformanceTable(table=t, name="judge").name
    'judge'
    """

    table: pd.DataFrame
    """The scores (validated)."""
    name: str = "user"
    """The aggregator's name."""
    source: str | None = None
    """The file the table was read from."""

    def __post_init__(self) -> None:
        t = self.table
        if not isinstance(t, pd.DataFrame):
            raise ConfigError(f"PerformanceTable table: expected a DataFrame; got {type(t)!r}.")
        key = "name" if "config_id" not in t.columns and "name" in t.columns else "config_id"
        missing = [c for c in [key, "question_id", "performance"] if c not in t.columns]
        if missing:
            raise DataError(
                f"PerformanceTable table: expected columns {[*_KEYS, 'performance']}; missing "
                f"{missing}. Present: {list(t.columns)}."
            )
        perf = pd.to_numeric(t["performance"], errors="coerce")
        bad = ~perf.between(0.0, 1.0)
        if bad.any():
            raise DataError(
                "PerformanceTable table: expected performance in [0, 1]; got "
                f"{t.loc[bad, 'performance'].iloc[0]!r}. Scale scores to [0, 1].",
                column="performance",
            )
        keys = [c for c in ("dataset", key, "question_id") if c in t.columns]
        dup = t.duplicated(keys)
        if dup.any():
            r = t[dup].iloc[0]
            raise DataError(
                f"PerformanceTable table: expected one row per {tuple(keys)}; got several for "
                f"{tuple(r[k] for k in keys)!r}."
            )

    @classmethod
    def from_file(cls, path: str | Path, *, name: str = "user") -> PerformanceTable:
        """Read a performance table from CSV, JSONL (``.gz``) or Parquet.

        Raises
        ------
        DataError
            If the file is unreadable, lacks a column, or a row has an empty key, a score
            outside [0, 1] or a duplicate key (the error names the file, line and column).
        """
        p = Path(path)
        df = _read_performance(p)
        if len(df) == 0:
            raise DataError("expected at least one row; the file is empty.", path=p)
        return cls(table=_check_performance_rows(df, p), name=name, source=str(p))

    @property
    def keyed_by_name(self) -> bool:
        """Whether rows name configurations by ``name`` rather than ``config_id``."""
        return "config_id" not in self.table.columns

    @property
    def is_binary(self) -> bool:
        """Whether every score is 0 or 1 (an accuracy) rather than a continuous score."""
        return bool(self.table["performance"].isin([0.0, 1.0]).all())

    def with_config_ids(self, names: Mapping[str, Sequence[tuple[str, str]]]) -> PerformanceTable:
        """The table keyed by ``config_id``, given dataset -> its ``(config_id, name)`` pairs.

        A table without a ``dataset`` column applies its names to every dataset; names that
        match no configuration are dropped (their rows score nothing).

        Raises
        ------
        ConfigError
            If a name of the table belongs to several configurations of a dataset.
        """
        if not self.keyed_by_name:
            return self
        t = self.table
        parts = []
        for ds, pairs in names.items():
            rows = t[t["dataset"] == ds] if "dataset" in t.columns else t
            ids = pd.DataFrame(list(pairs), columns=["config_id", "name"])
            shared = ids[ids["name"].duplicated(keep=False) & ids["name"].isin(rows["name"])]
            if not shared.empty:
                raise ConfigError(
                    f"PerformanceTable table: dataset {ds!r}: expected names that each belong to "
                    f"one configuration; {shared['name'].iloc[0]!r} names "
                    f"{sorted(shared.loc[shared['name'] == shared['name'].iloc[0], 'config_id'])}. "
                    "Key the table by config_id."
                )
            parts.append(rows.assign(dataset=ds).merge(ids, on="name", how="inner"))
        cols = ["dataset", *_KEYS, "performance"]
        out = pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
        return replace(self, table=out)

    def scores(self, block: SlotBlock) -> NDArray[np.float64]:
        """The table's score of every pair of ``block`` (NaN where it has none)."""
        t = self.table
        if "dataset" in t.columns:
            t = t[t["dataset"] == block.dataset]
        lut = t.set_index(_KEYS)["performance"].astype(np.float64)
        want = pd.MultiIndex.from_product([block.config_ids, block.question_ids], names=_KEYS)
        out: NDArray[np.float64] = lut.reindex(want).to_numpy(dtype=np.float64)
        return out.reshape(block.valid.shape)

    def label(self, spec: ConfigSpec) -> str:
        """The table's :attr:`name` for every configuration."""
        return self.name


def final_aggregator_positions(outputs: pd.DataFrame) -> NDArray[np.int64]:
    """Row positions (0-based) in ``outputs`` of the final aggregator row of every pair.

    A row is an aggregator row when ``role == "aggregator"``; the final one of a pair is the
    row with ``is_final`` true when that column is filled, else the one with the largest
    ``step``. Rows whose ``status`` is not ``"ok"`` are ignored. This is the one rule of which
    row scores a (configuration, question); :func:`final_aggregator_rows` and the report use it.

    Raises
    ------
    DataError
        If a pair has several final rows.
    """
    if "role" not in outputs.columns or "config_id" not in outputs.columns:
        return np.empty(0, dtype=np.int64)
    rows = outputs.reset_index(drop=True)
    agg = rows[rows["role"] == "aggregator"]
    if "status" in agg.columns:
        agg = agg[agg["status"].isna() | (agg["status"] == "ok")]
    if "is_final" in agg.columns and agg["is_final"].notna().any():
        agg = agg[agg["is_final"].fillna(False).astype(bool)]
    elif not agg.empty:
        step = agg["step"].fillna(0) if "step" in agg.columns else pd.Series(0, index=agg.index)
        agg = agg.assign(_step=step).sort_values("_step")
        agg = agg.groupby(["dataset", *_KEYS], sort=False).tail(1)
    dup = agg.duplicated(["dataset", *_KEYS])
    if dup.any():
        r = agg[dup].iloc[0]
        raise DataError(
            f"expected one final aggregator row per (dataset, config_id, question_id); got "
            f"several for {r['dataset']!r}, {r['config_id']!r}, {r['question_id']!r}. "
            "Mark exactly one with is_final.",
            column="is_final",
        )
    return np.asarray(agg.index, dtype=np.int64)


def final_aggregator_rows(outputs: pd.DataFrame) -> pd.DataFrame:
    """Final aggregator score per (dataset, config_id, question_id) from runner rows.

    The rows are those of :func:`final_aggregator_positions`.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, config_id, question_id, performance`` (the row's ``correct``).

    Raises
    ------
    DataError
        If a pair has several final rows.
    """
    cols = ["dataset", *_KEYS, "performance"]
    pos = final_aggregator_positions(outputs)
    if pos.size == 0:
        return pd.DataFrame(columns=cols)
    agg = outputs.iloc[pos]
    return agg.rename(columns={"correct": "performance"})[cols].reset_index(drop=True)


@dataclass(frozen=True, kw_only=True, eq=False)
class RunRows(PerformanceTable):
    """The ``"llm"`` aggregator: the final aggregator rows a run recorded.

    Each configuration is labelled by its own spec (:func:`spec_aggregator_label`): a run's rows
    may come from an LLM, from the runner's offline vote or from a single model.
    """

    name: str = "llm"
    """Always ``"llm"``."""

    @classmethod
    def from_outputs(cls, outputs: pd.DataFrame) -> RunRows:
        """The final aggregator rows of ``outputs`` (see :func:`final_aggregator_rows`).

        Raises
        ------
        ConfigError
            If the outputs hold no aggregator rows.
        """
        table = final_aggregator_rows(outputs)
        if table.empty:
            raise ConfigError(
                "aggregator 'llm': expected aggregator rows (role == 'aggregator' with config_id "
                "and config); the outputs have none. Use 'plurality_vote' or 'oracle'."
            )
        return cls(table=table)

    def label(self, spec: ConfigSpec) -> str:
        """What the configuration's spec says produced its rows."""
        return spec_aggregator_label(spec)


#: The built-in aggregators by name: each builds its aggregator from the outputs table.
AGGREGATORS: Mapping[str, Callable[[pd.DataFrame], Aggregator]] = {
    "plurality_vote": lambda outputs: PluralityVote(),
    "oracle": lambda outputs: Oracle(),
    "llm": RunRows.from_outputs,
}


def get_aggregator(aggregator: str | Aggregator, outputs: pd.DataFrame) -> Aggregator:
    """The aggregator named ``aggregator`` (from :data:`AGGREGATORS`), or ``aggregator`` itself.

    Parameters
    ----------
    aggregator
        A name of :data:`AGGREGATORS` or an :class:`Aggregator`.
    outputs
        The outputs table (``"llm"`` reads its aggregator rows).

    Raises
    ------
    ConfigError
        If the name is unknown, or the object is no :class:`Aggregator`.

    Examples
    --------
    >>> get_aggregator("oracle", pd.DataFrame()).name
    'oracle'
    """
    if isinstance(aggregator, str):
        if aggregator not in AGGREGATORS:
            raise ConfigError(
                f"aggregator: expected one of {list(AGGREGATORS)} or an Aggregator; got "
                f"{aggregator!r}."
            )
        return AGGREGATORS[aggregator](outputs)
    if not isinstance(aggregator, Aggregator):
        raise ConfigError(
            "aggregator: expected a name or an object with name, scores(block) and "
            f"label(spec); got {type(aggregator).__name__}."
        )
    return aggregator
