"""The QD table: quality, diversity and performance of every configuration.

For each configuration and question, the *pair*, this module gathers the outputs filling the
configuration's slots and measures: quality (mean ``correct`` of those outputs), diversity (Vendi
Score of their embeddings) and performance (the ensemble's score: the final aggregator row of a
run, or an offline aggregator). A pair that misses any slot's output is dropped from all three
measures, so all three always describe exactly the outputs the aggregator saw. Per
configuration, the measures are averaged over its questions, each question weighing equally.

Neighbours: :mod:`qdanalysis.configs` (the configurations), :mod:`qdanalysis.analysis.embeddings`
(the
vectors), :mod:`qdanalysis.analysis.diversity` (Vendi), :mod:`qdanalysis.analysis.regression` (the
fit).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..configs import ConfigSpec, configs_frame, type_letters
from ..errors import ConfigError, DataError, DataWarning
from .diversity import DEFAULT_TOL, slice_grams, vendi_score
from .embeddings import Embeddings
from .performance import OFFLINE_AGGREGATORS, oracle_scores, plurality_vote_scores

__all__ = [
    "PAIR_COLUMNS",
    "QD_COLUMNS",
    "SlotIndex",
    "aggregator_scores",
    "build_qd_table",
    "measure_pairs",
    "slot_index",
    "summarise_pairs",
]

PAIR_COLUMNS = ("dataset", "config_id", "question_id", "quality", "diversity", "performance")
QD_COLUMNS = (
    "dataset",
    "config_id",
    "name",
    "proposers",
    "samples",
    "method",
    "n_proposers",
    "n_models",
    "n_questions",
    "quality",
    "quality_model",
    "diversity",
    "performance",
    "embedding_model",
    "vendi_q",
    "aggregator",
)


@dataclass(frozen=True, kw_only=True)
class SlotIndex:
    """Which row of one dataset's proposer table fills each (configuration, question, slot)."""

    frame: pd.DataFrame
    """The dataset's proposer rows, index reset (positions are row numbers)."""
    configs: tuple[ConfigSpec, ...]
    """Configurations, all with the same number of slots."""
    question_ids: NDArray[np.object_]
    """Question ids, sorted."""
    rows: NDArray[np.int64]
    """``(n_configs, n_questions, n_slots)`` row numbers into :attr:`frame`; -1 where missing."""

    @property
    def valid(self) -> NDArray[np.bool_]:
        """``(n_configs, n_questions)``: every slot has an output."""
        return np.asarray((self.rows >= 0).all(axis=2))


def slot_index(
    frame: pd.DataFrame, configs: Sequence[ConfigSpec], *, proposer_column: str = "proposer"
) -> SlotIndex:
    """Locate each slot's output for every question (one dataset, equal slot counts).

    Raises
    ------
    ConfigError
        If configurations have different numbers of slots, or a slot names a proposer type or
        sample that the rows never contain.
    """
    frame = frame.reset_index(drop=True)
    ns = {c.n_proposers for c in configs}
    if len(ns) != 1:
        raise ConfigError(
            f"slot_index: expected configurations of one size; got sizes {sorted(ns)}."
        )
    qids = np.array(sorted(frame["question_id"].unique()), dtype=object)
    qpos = {q: i for i, q in enumerate(qids)}
    pairs = (
        frame[[proposer_column, "sample_index"]]
        .drop_duplicates()
        .sort_values([proposer_column, "sample_index"])
    )
    tpos = {(str(t), int(s)): i for i, (t, s) in enumerate(pairs.itertuples(index=False))}
    table = np.full((len(qids), len(tpos)), -1, dtype=np.int64)
    qi = frame["question_id"].map(qpos).to_numpy()
    ti = np.array(
        [
            tpos[(str(t), int(s))]
            for t, s in zip(frame[proposer_column], frame["sample_index"], strict=True)
        ],
        dtype=np.int64,
    )
    table[qi, ti] = np.arange(len(frame))
    cols = np.empty((len(configs), ns.pop()), dtype=np.int64)
    for c, spec in enumerate(configs):
        for j, slot in enumerate(spec.proposers):
            key = (slot.model, slot.sample_index)
            if key not in tpos:
                raise ConfigError(
                    f"configuration {spec.config_id}: slot {key} names a proposer type and "
                    f"sample that the outputs do not contain. Types present: "
                    f"{sorted({t for t, _ in tpos})}. Check --proposer-key."
                )
            cols[c, j] = tpos[key]
    rows = np.transpose(table[:, cols], (1, 0, 2))
    return SlotIndex(frame=frame, configs=tuple(configs), question_ids=qids, rows=rows)


def _answer_codes(frame: pd.DataFrame) -> NDArray[np.int64]:
    keys = frame["answer_key"]
    codes, _ = pd.factorize(keys.where(keys.notna(), None), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


#: Groups per eigenvalue call in :func:`_vendi_pairs`: bounds memory (~36 n² bytes per group
#: for the stacked matrices) while keeping each call large enough to amortise its overhead.
_VENDI_CHUNK = 65_536


def _vendi_pairs(idx: SlotIndex, emb: Embeddings, *, q: float, tol: float) -> NDArray[np.float64]:
    """Vendi Score of each valid pair, from one Gram block per question.

    Each question's Gram block ``E Eᵀ`` is computed once; every configuration's matrix is a
    slice of it. Slices are stacked and scored in chunks of :data:`_VENDI_CHUNK` groups, on
    CUDA when torch is already loaded and sees a GPU (never importing torch for it).
    """
    frame = idx.frame
    erow = emb.rows_for(frame["output"].tolist())
    valid = idx.valid
    out = np.full(valid.shape, np.nan)
    device = "auto" if "torch" in sys.modules else "cpu"
    by_q = frame.groupby("question_id", sort=False).indices
    blocks: list[NDArray[np.float64]] = []
    where: list[tuple[NDArray[np.int64], int]] = []
    pending = 0

    def flush() -> None:
        K = np.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
        scores = vendi_score(K, q=q, tol=tol, device=device)
        pos = 0
        for cfg, qi in where:
            out[cfg, qi] = scores[pos : pos + cfg.size]
            pos += cfg.size
        blocks.clear()
        where.clear()

    local = np.empty(len(frame), dtype=np.int64)
    vectors = emb.vectors
    for qi, qid in enumerate(idx.question_ids):
        cfg = np.flatnonzero(valid[:, qi])
        if cfg.size == 0:
            continue
        members = by_q[qid]
        local[members] = np.arange(members.size)
        e = vectors[erow[members]].astype(np.float64)
        gram = e @ e.T
        blocks.append(slice_grams(gram, local[idx.rows[cfg, qi, :]]))
        where.append((cfg, qi))
        pending += cfg.size
        if pending >= _VENDI_CHUNK:
            flush()
            pending = 0
    if blocks:
        flush()
    return out


def aggregator_scores(outputs: pd.DataFrame) -> pd.DataFrame:
    """Final aggregator score per (dataset, config_id, question_id) from runner rows.

    A row is an aggregator row when ``role == "aggregator"``; the final one of a pair is the
    row with ``is_final`` true when that column exists, else the one with the largest ``step``.
    Rows whose ``status`` is not ``"ok"`` are ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, config_id, question_id, performance`` (the row's ``correct``).
    """
    cols = ["dataset", "config_id", "question_id", "performance"]
    if "role" not in outputs.columns or "config_id" not in outputs.columns:
        return pd.DataFrame(columns=cols)
    agg = outputs[outputs["role"] == "aggregator"]
    if "status" in agg.columns:
        agg = agg[agg["status"].isna() | (agg["status"] == "ok")]
    if agg.empty:
        return pd.DataFrame(columns=cols)
    if "is_final" in agg.columns and agg["is_final"].notna().any():
        agg = agg[agg["is_final"].fillna(False).astype(bool)]
    else:
        step = agg["step"].fillna(0) if "step" in agg.columns else pd.Series(0, index=agg.index)
        agg = agg.assign(_step=step).sort_values("_step")
        agg = agg.groupby(["dataset", "config_id", "question_id"], sort=False).tail(1)
    dup = agg.duplicated(["dataset", "config_id", "question_id"])
    if dup.any():
        r = agg[dup].iloc[0]
        raise DataError(
            f"expected one final aggregator row per (dataset, config_id, question_id); got "
            f"several for {r['dataset']!r}, {r['config_id']!r}, {r['question_id']!r}. "
            "Mark exactly one with is_final.",
            column="is_final",
        )
    return agg.rename(columns={"correct": "performance"})[cols].reset_index(drop=True)


def measure_pairs(
    outputs: pd.DataFrame,
    configs: Sequence[ConfigSpec],
    embeddings: Embeddings | None,
    *,
    dataset: str,
    q: float = 1.0,
    tol: float = DEFAULT_TOL,
    aggregator: str = "plurality_vote",
    runs: pd.DataFrame | None = None,
    proposer_column: str = "proposer",
) -> pd.DataFrame:
    """Quality, diversity and performance of every (configuration, question) pair of a dataset.

    Parameters
    ----------
    outputs
        Proposer rows of one dataset with a proposer-type column.
    configs
        Configurations to measure (any mix of sizes).
    embeddings
        Vectors of the outputs' texts; ``None`` skips diversity (NaN).
    dataset
        The dataset name written into the result.
    q, tol
        Vendi order and eigenvalue tolerance (see
        :func:`~qdanalysis.analysis.diversity.vendi_score`).
    aggregator
        ``"plurality_vote"`` or ``"oracle"`` (offline rules), or ``"llm"`` to read each pair's
        score from ``runs`` (see :func:`aggregator_scores`).
    runs
        The output of :func:`aggregator_scores`, for ``aggregator="llm"``.
    proposer_column
        Column naming each row's proposer type.

    Returns
    -------
    pandas.DataFrame
        One row per valid pair: ``dataset, config_id, question_id, quality, diversity,
        performance`` with quality and performance in [0, 1]. Pairs missing a slot's output (or,
        for ``"llm"``, an aggregator row) are dropped with a
        :class:`~qdanalysis.errors.DataWarning`.
    """
    if aggregator not in (*OFFLINE_AGGREGATORS, "llm"):
        raise ConfigError(
            f"aggregator: expected one of {[*OFFLINE_AGGREGATORS, 'llm']}; got {aggregator!r}."
        )
    if aggregator == "plurality_vote" and outputs["answer_key"].isna().all():
        raise ConfigError(
            f"dataset {dataset!r}: plurality vote needs the 'answer_key' column, which is empty. "
            "Fill it (a canonical form of each answer) or use --aggregator oracle."
        )
    frames = []
    by_size: dict[int, list[ConfigSpec]] = {}
    for c in configs:
        by_size.setdefault(c.n_proposers, []).append(c)
    n_missing = 0
    n_total = 0
    for group in by_size.values():
        idx = slot_index(outputs, group, proposer_column=proposer_column)
        valid = idx.valid
        n_total += valid.size
        n_missing += int((~valid).sum())
        safe = np.where(idx.rows >= 0, idx.rows, 0)
        corr = idx.frame["correct"].to_numpy(dtype=np.float64)[safe]
        quality = corr.mean(axis=2)
        if aggregator == "plurality_vote":
            codes = _answer_codes(idx.frame)[safe]
            perf = plurality_vote_scores(
                codes.reshape(-1, codes.shape[2]), corr.reshape(-1, corr.shape[2])
            ).reshape(valid.shape)
        elif aggregator == "oracle":
            perf = oracle_scores(corr.reshape(-1, corr.shape[2])).reshape(valid.shape)
        else:
            if runs is None:
                raise ConfigError("aggregator='llm' needs runs=aggregator_scores(outputs).")
            lut = runs[runs["dataset"] == dataset].set_index(["config_id", "question_id"])[
                "performance"
            ]
            perf = np.full(valid.shape, np.nan)
            qpos = {qq: i for i, qq in enumerate(idx.question_ids)}
            cpos = {c.config_id: i for i, c in enumerate(group)}
            for (cid, qid), v in lut.items():
                if cid in cpos and qid in qpos:
                    perf[cpos[cid], qpos[qid]] = v
        div = (
            _vendi_pairs(idx, embeddings, q=q, tol=tol)
            if embeddings is not None
            else np.full(valid.shape, np.nan)
        )
        keep = valid & ~np.isnan(perf) if aggregator == "llm" else valid
        if aggregator == "llm":
            n_missing += int((valid & np.isnan(perf)).sum())
        ci, qi = np.nonzero(keep)
        # config_id hashes the spec's canonical JSON on every access: once per configuration.
        ids = np.array([c.config_id for c in group], dtype=object)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "config_id": ids[ci].tolist(),
                    "question_id": idx.question_ids[qi],
                    "quality": quality[ci, qi],
                    "diversity": div[ci, qi],
                    "performance": perf[ci, qi],
                }
            )
        )
    if n_missing:
        warnings.warn(
            f"dataset {dataset!r}: {n_missing} of {n_total} (configuration, question) pairs lack "
            "an output for some slot (or an aggregator row) and are left out of quality, "
            "diversity and performance alike.",
            DataWarning,
            stacklevel=2,
        )
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)
    return out[list(PAIR_COLUMNS)]


def summarise_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Average pair measures per configuration: quality and performance in %, n_questions.

    Returns
    -------
    pandas.DataFrame
        ``dataset, config_id, n_questions, quality, diversity, performance``.
    """
    g = pairs.groupby(["dataset", "config_id"], sort=True)
    out = g.agg(
        n_questions=("question_id", "size"),
        quality=("quality", "mean"),
        diversity=("diversity", "mean"),
        performance=("performance", "mean"),
    ).reset_index()
    out["quality"] *= 100.0
    out["performance"] *= 100.0
    return out


def _model_accuracy(outputs: pd.DataFrame, proposer_column: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in outputs.groupby(proposer_column)["correct"].mean().items()}


def build_qd_table(
    outputs: pd.DataFrame,
    configs: Mapping[str, Sequence[ConfigSpec]],
    embeddings: Embeddings | None,
    *,
    q: float = 1.0,
    tol: float = DEFAULT_TOL,
    aggregator: str = "plurality_vote",
    runs: pd.DataFrame | None = None,
    proposer_column: str = "proposer",
    letters: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the QD table (one row per dataset and configuration) and the pair table.

    Parameters
    ----------
    outputs
        Proposer rows of any number of datasets, with a proposer-type column.
    configs
        Dataset name -> its configurations.
    embeddings
        Vectors for the outputs' texts (``None``: diversity is NaN).
    q, tol, aggregator, runs, proposer_column
        See :func:`measure_pairs`.
    letters
        Dataset -> proposer type -> letter for the ``name`` column (default:
        :func:`~qdanalysis.configs.type_letters` per dataset).

    Returns
    -------
    qd_table : pandas.DataFrame
        Columns :data:`QD_COLUMNS`: ``dataset, config_id, name`` (one letter per slot),
        ``proposers`` (JSON array of the slots' types in slot order), ``samples`` (JSON array of
        their sample indices), ``method, n_proposers, n_models, n_questions``, ``quality`` (mean
        proposer ``correct`` over the pairs, %), ``quality_model`` (mean over slots of each
        type's overall accuracy in the dataset, %: the paper's definition), ``diversity`` (mean
        Vendi Score), ``performance`` (ensemble score, %), ``embedding_model, vendi_q,
        aggregator``.
    pairs : pandas.DataFrame
        :data:`PAIR_COLUMNS`, quality and performance in [0, 1].
    """
    tables = []
    pair_tables = []
    emb_name = embeddings.model if embeddings is not None else None
    agg_label = aggregator
    for ds in sorted(configs):
        rows = outputs[outputs["dataset"] == ds]
        if rows.empty:
            raise ConfigError(f"dataset {ds!r}: expected proposer rows; the outputs have none.")
        cfgs = list(configs[ds])
        if not cfgs:
            raise ConfigError(f"dataset {ds!r}: expected at least one configuration; got none.")
        pairs = measure_pairs(
            rows,
            cfgs,
            embeddings,
            dataset=ds,
            q=q,
            tol=tol,
            aggregator=aggregator,
            runs=runs,
            proposer_column=proposer_column,
        )
        pair_tables.append(pairs)
        summary = summarise_pairs(pairs)
        lets = (
            dict(letters[ds])
            if letters is not None and ds in letters
            else type_letters(rows[proposer_column].unique().tolist())
        )
        meta = configs_frame(cfgs, letters=lets).drop(columns=["config"])
        acc = _model_accuracy(rows, proposer_column)
        meta["quality_model"] = [
            100.0 * float(np.mean([acc[t] for t in json.loads(p)])) for p in meta["proposers"]
        ]
        t = meta.merge(summary, on="config_id", how="inner")
        t["dataset"] = ds
        tables.append(t)
    qd = pd.concat(tables, ignore_index=True)
    qd["embedding_model"] = emb_name
    qd["vendi_q"] = float(q)
    qd["aggregator"] = agg_label
    qd = qd[list(QD_COLUMNS)].sort_values(["dataset", "config_id"]).reset_index(drop=True)
    pairs_all = pd.concat(pair_tables, ignore_index=True)
    return qd, pairs_all
