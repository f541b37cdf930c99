"""The measuring engine: quality, diversity and performance of every (configuration, question).

For each configuration and question, the *pair*, the engine gathers the outputs filling the
configuration's slots (one :class:`SlotIndex` per dataset and slot count) and measures: quality
(the slots' ``correct``), performance (what an :class:`~qdanalysis.analysis.aggregators.Aggregator`
scores), coverage (the best slot's ``correct``: the oracle's score), the slots' output length and
the diversity measures a :class:`PairRequest` asks for (Vendi Scores of any orders,
mean cosine distance, answer count and entropy, the question-averaged kernel), all from one Gram
block per question. A pair that misses a slot's output, or gets no score, is dropped from every
measure, so all measures describe exactly the outputs the aggregator saw. Every table that needs
these measures asks this module: the QD table (:mod:`qdanalysis.analysis.qdtable`), the
sensitivity table (:mod:`qdanalysis.analysis.sensitivity`) and, through the pair table, the
bootstrap (:mod:`qdanalysis.analysis.uncertainty`).

Neighbours: :mod:`qdanalysis.configs` (the configurations), :mod:`qdanalysis.analysis.embeddings`
(the vectors), :mod:`qdanalysis.analysis.diversity` (the measures of one Gram slice),
:mod:`qdanalysis.analysis.aggregators` (performance).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..configs import ConfigSpec
from ..errors import ConfigError, DataWarning
from ..votes import answer_codes
from .aggregators import Aggregator, Oracle, PluralityVote, SlotBlock
from .diversity import (
    DEFAULT_TOL,
    answer_count,
    answer_entropy,
    pairwise_cosine_distance,
    slice_grams,
    vendi_score,
)
from .embeddings import Embeddings

__all__ = [
    "PAIR_COLUMNS",
    "PairBlock",
    "PairRequest",
    "SlotIndex",
    "iter_pair_blocks",
    "measure_blocks",
    "measure_pairs",
    "pair_frame",
    "slot_index",
    "summarise_pair_frames",
    "summarise_pairs",
    "vendi_name",
]

PAIR_COLUMNS = (
    "dataset",
    "config_id",
    "question_id",
    "quality",
    "diversity",
    "performance",
    "coverage",
    "length_chars",
)


def vendi_name(q: float) -> str:
    """Key of the Vendi Score of order ``q`` among a block's diversity measures.

    Examples
    --------
    >>> vendi_name(1.0), vendi_name(0.5), vendi_name(math.inf)
    ('vendi_q1', 'vendi_q0.5', 'vendi_qinf')
    """
    return "vendi_qinf" if math.isinf(q) else f"vendi_q{q:g}"


@dataclass(frozen=True, kw_only=True)
class PairRequest:
    """Which diversity measures the engine computes per pair (quality and performance always)."""

    vendi_orders: tuple[float, ...] = (1.0,)
    """Orders q of the Vendi Scores (keys :func:`vendi_name`)."""
    tol: float = DEFAULT_TOL
    """Vendi eigenvalue tolerance."""
    cosine: bool = False
    """Mean pairwise cosine distance (key ``cosine``; NaN for one slot, where it is undefined)."""
    answers: bool = False
    """Number and entropy of distinct answer keys (keys ``answers``, ``answer_entropy``)."""
    pooled: bool = False
    """The question-averaged kernel K̄ of each configuration (:attr:`PairBlock.kernel`)."""

    @property
    def needs_grams(self) -> bool:
        """Whether any requested measure reads the embeddings."""
        return bool(self.vendi_orders) or self.cosine or self.pooled


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


def _slot_columns(
    configs: Sequence[ConfigSpec], tpos: dict[tuple[str, int], int], n: int
) -> NDArray[np.int64]:
    cols = np.empty((len(configs), n), dtype=np.int64)
    for c, spec in enumerate(configs):
        for j, slot in enumerate(spec.proposers):
            key = (slot.model, slot.sample_index)
            if key not in tpos:
                raise ConfigError(
                    f"configuration {spec.config_id}: slot {key} names a proposer type and "
                    f"sample that the outputs do not contain. Types present: "
                    f"{sorted({t for t, _ in tpos})}. Check proposer_key."
                )
            cols[c, j] = tpos[key]
    return cols


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
    cols = _slot_columns(configs, tpos, ns.pop())
    rows = np.transpose(table[:, cols], (1, 0, 2))
    return SlotIndex(frame=frame, configs=tuple(configs), question_ids=qids, rows=rows)


@dataclass(frozen=True, kw_only=True, eq=False)
class PairBlock:
    """Every measure of the pairs of one :class:`SlotBlock` (one dataset, one slot count)."""

    slots: SlotBlock
    """The slots' scores and answer codes."""
    configs: tuple[ConfigSpec, ...]
    """The block's configurations, in row order."""
    keep: NDArray[np.bool_]
    """``(C, Q)``: the pair is measured (every slot filled and a score given)."""
    performance: NDArray[np.float64]
    """``(C, Q)`` the aggregator's scores in [0, 1] (NaN where not :attr:`keep`)."""
    diversity: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    """Measure key -> ``(C, Q)`` values (NaN where not :attr:`keep`)."""
    kernel: NDArray[np.float64] | None = None
    """``(C, n, n)`` question-averaged similarity K̄ over kept pairs, when requested."""
    length_chars: NDArray[np.float64] | None = None
    """``(C, Q)`` mean length of the slots' outputs in characters (NaN where not :attr:`keep`;
    None when not measured)."""

    @property
    def quality(self) -> NDArray[np.float64]:
        """``(C, Q)`` mean ``correct`` of the slots."""
        return np.asarray(self.slots.correct.mean(axis=2))

    @property
    def coverage(self) -> NDArray[np.float64]:
        """``(C, Q)`` best slot's ``correct`` (any slot correct, for 0/1 scores): the
        :class:`~qdanalysis.analysis.aggregators.Oracle`'s score, by the oracle itself."""
        return np.asarray(Oracle().scores(self.slots), dtype=np.float64)


#: Groups per eigenvalue call in :func:`_gram_measures`: bounds memory (~36 n² bytes per group
#: for the stacked matrices) while keeping each call large enough to amortise its overhead.
_VENDI_CHUNK = 65_536


class _GramMeasures:
    """Accumulates the Gram-slice measures of a block, one stacked chunk at a time."""

    def __init__(self, keep: NDArray[np.bool_], n: int, request: PairRequest) -> None:
        self.request = request
        self.out = {vendi_name(q): np.full(keep.shape, np.nan) for q in request.vendi_orders}
        if request.cosine:
            self.out["cosine"] = np.full(keep.shape, np.nan)
        self.kernel = np.zeros((keep.shape[0], n, n)) if request.pooled else None
        # Stack on CUDA when torch is already loaded and sees a GPU (never importing torch).
        self.device = "auto" if "torch" in sys.modules else "cpu"
        self.blocks: list[NDArray[np.float64]] = []
        self.where: list[tuple[NDArray[np.int64], int]] = []
        self.pending = 0

    def add(self, grams: NDArray[np.float64], cfg: NDArray[np.int64], qi: int) -> None:
        self.blocks.append(grams)
        self.where.append((cfg, qi))
        self.pending += cfg.size
        if self.pending >= _VENDI_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.blocks:
            return
        K = np.concatenate(self.blocks, axis=0) if len(self.blocks) > 1 else self.blocks[0]
        ci = np.concatenate([cfg for cfg, _ in self.where])
        qi = np.concatenate([np.full(cfg.size, q) for cfg, q in self.where])
        for q in self.request.vendi_orders:
            self.out[vendi_name(q)][ci, qi] = vendi_score(
                K, q=q, tol=self.request.tol, device=self.device
            )
        if self.request.cosine:
            self.out["cosine"][ci, qi] = pairwise_cosine_distance(K)
        if self.kernel is not None:
            np.add.at(self.kernel, ci, K)
        self.blocks.clear()
        self.where.clear()
        self.pending = 0


def _gram_measures(
    idx: SlotIndex, emb: Embeddings, keep: NDArray[np.bool_], request: PairRequest
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.float64] | None]:
    """Diversity measures of each kept pair, from one Gram block ``E Eᵀ`` per question.

    Every configuration's matrix is a slice of its question's block; slices are stacked and
    measured in chunks of :data:`_VENDI_CHUNK` groups.
    """
    frame = idx.frame
    erow = emb.rows_for(frame["output"].tolist())
    acc = _GramMeasures(keep, idx.rows.shape[2], request)
    by_q = frame.groupby("question_id", sort=False).indices
    local = np.empty(len(frame), dtype=np.int64)
    for qi, qid in enumerate(idx.question_ids):
        cfg = np.flatnonzero(keep[:, qi])
        if cfg.size == 0:
            continue
        members = by_q[qid]
        local[members] = np.arange(members.size)
        e = emb.vectors[erow[members]].astype(np.float64)
        acc.add(slice_grams(e @ e.T, local[idx.rows[cfg, qi, :]]), cfg, qi)
    acc.flush()
    kernel = acc.kernel
    if kernel is not None:
        kernel /= np.maximum(keep.sum(axis=1), 1)[:, None, None]
    return acc.out, kernel


def _slot_block(idx: SlotIndex, dataset: str, codes_all: NDArray[np.int64]) -> SlotBlock:
    safe = np.where(idx.rows >= 0, idx.rows, 0)
    return SlotBlock(
        dataset=dataset,
        # config_id hashes the spec's canonical JSON on every access: once per configuration.
        config_ids=np.array([c.config_id for c in idx.configs], dtype=object),
        question_ids=idx.question_ids,
        valid=idx.valid,
        correct=idx.frame["correct"].to_numpy(dtype=np.float64)[safe],
        codes=codes_all[safe],
    )


def _slot_lengths(idx: SlotIndex, keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``(C, Q)`` mean character count of the slots' outputs (NaN where not ``keep``).

    Characters, not tokens: they need no tokenizer, so the covariate does not depend on the
    embedding model (and is not capped by its truncation).
    """
    chars = idx.frame["output"].fillna("").astype(str).str.len().to_numpy(dtype=np.float64)
    mean = chars[np.where(idx.rows >= 0, idx.rows, 0)].mean(axis=2)
    return np.where(keep, mean, np.nan)


def _measure_group(
    frame: pd.DataFrame,
    group: Sequence[ConfigSpec],
    embeddings: Embeddings | None,
    *,
    dataset: str,
    aggregator: Aggregator,
    request: PairRequest,
    proposer_column: str,
) -> PairBlock:
    idx = slot_index(frame, group, proposer_column=proposer_column)
    slots = _slot_block(idx, dataset, answer_codes(idx.frame["answer_key"]))
    perf = np.asarray(aggregator.scores(slots), dtype=np.float64)
    keep = slots.valid & np.isfinite(perf)
    div: dict[str, NDArray[np.float64]] = {}
    kernel = None
    if embeddings is not None and request.needs_grams:
        div, kernel = _gram_measures(idx, embeddings, keep, request)
    elif request.needs_grams:
        div = {vendi_name(q): np.full(keep.shape, np.nan) for q in request.vendi_orders}
    if request.answers:
        n = slots.codes.shape[2]
        flat = slots.codes.reshape(-1, n)
        div["answers"] = answer_count(flat).reshape(keep.shape)
        div["answer_entropy"] = answer_entropy(flat).reshape(keep.shape)
    return PairBlock(
        slots=slots,
        configs=idx.configs,
        keep=keep,
        performance=np.where(keep, perf, np.nan),
        diversity={k: np.where(keep, v, np.nan) for k, v in div.items()},
        kernel=kernel,
        length_chars=_slot_lengths(idx, keep),
    )


def measure_blocks(
    outputs: pd.DataFrame,
    configs: Sequence[ConfigSpec],
    embeddings: Embeddings | None,
    *,
    dataset: str,
    aggregator: Aggregator | None = None,
    request: PairRequest | None = None,
    proposer_column: str = "proposer",
    warn: bool = True,
) -> list[PairBlock]:
    """Measure every (configuration, question) pair of one dataset: the engine's entry point.

    Parameters
    ----------
    outputs
        Proposer rows of one dataset with a proposer-type column.
    configs
        Configurations to measure (any mix of sizes: one block per size, in order of first
        appearance).
    embeddings
        Vectors of the outputs' texts; ``None`` leaves the Gram measures NaN.
    dataset
        The dataset name of the pairs.
    aggregator
        What scores each pair (default :class:`~qdanalysis.analysis.aggregators.PluralityVote`).
    request
        The diversity measures to compute (default: Vendi q = 1).
    proposer_column
        Column naming each row's proposer type.
    warn
        Issue a :class:`~qdanalysis.errors.DataWarning` when pairs are dropped.

    Returns
    -------
    list of PairBlock
    """
    agg = aggregator if aggregator is not None else PluralityVote()
    req = request if request is not None else PairRequest()
    by_size: dict[int, list[ConfigSpec]] = {}
    for c in configs:
        by_size.setdefault(c.n_proposers, []).append(c)
    blocks = [
        _measure_group(
            outputs,
            group,
            embeddings,
            dataset=dataset,
            aggregator=agg,
            request=req,
            proposer_column=proposer_column,
        )
        for group in by_size.values()
    ]
    n_total = sum(b.keep.size for b in blocks)
    n_missing = sum(int((~b.keep).sum()) for b in blocks)
    if n_missing and warn:
        _warn_dropped(dataset, n_missing, n_total)
    return blocks


def _warn_dropped(dataset: str, n_missing: int, n_total: int) -> None:
    warnings.warn(
        f"dataset {dataset!r}: {n_missing} of {n_total} (configuration, question) pairs lack "
        "an output for some slot (or a score from the aggregator) and are left out of "
        "quality, diversity and performance alike.",
        DataWarning,
        stacklevel=3,
    )


def pair_frame(blocks: Sequence[PairBlock], *, diversity: str = "vendi_q1") -> pd.DataFrame:
    """The pair table of measured blocks: one row per kept pair.

    Parameters
    ----------
    blocks
        :func:`measure_blocks` results of one dataset.
    diversity
        The measure key written to the ``diversity`` column.

    Returns
    -------
    pandas.DataFrame
        :data:`PAIR_COLUMNS`: quality, performance and ``coverage`` (the best slot's
        ``correct``, the oracle's score) in [0, 1]; ``length_chars``, the mean number of
        characters of the slots' outputs.
    """
    frames = []
    for b in blocks:
        ci, qi = np.nonzero(b.keep)
        div = b.diversity.get(diversity, np.full(b.keep.shape, np.nan))
        length = b.length_chars if b.length_chars is not None else np.full(b.keep.shape, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": b.slots.dataset,
                    "config_id": b.slots.config_ids[ci].tolist(),
                    "question_id": b.slots.question_ids[qi],
                    "quality": b.quality[ci, qi],
                    "diversity": div[ci, qi],
                    "performance": b.performance[ci, qi],
                    "coverage": b.coverage[ci, qi],
                    "length_chars": length[ci, qi],
                }
            )
        )
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)
    return out[list(PAIR_COLUMNS)]


def measure_pairs(
    outputs: pd.DataFrame,
    configs: Sequence[ConfigSpec],
    embeddings: Embeddings | None,
    *,
    dataset: str,
    q: float = 1.0,
    tol: float = DEFAULT_TOL,
    aggregator: Aggregator | None = None,
    proposer_column: str = "proposer",
) -> pd.DataFrame:
    """Quality, diversity (Vendi of order ``q``) and performance of every pair of a dataset.

    A shortcut of :func:`measure_blocks` and :func:`pair_frame`; see them for the arguments.

    Returns
    -------
    pandas.DataFrame
        One row per kept pair: :data:`PAIR_COLUMNS` (see :func:`pair_frame`). Pairs
        missing a slot's output (or a score) are dropped with a
        :class:`~qdanalysis.errors.DataWarning`.
    """
    blocks = measure_blocks(
        outputs,
        configs,
        embeddings,
        dataset=dataset,
        aggregator=aggregator,
        request=PairRequest(vendi_orders=(q,), tol=tol),
        proposer_column=proposer_column,
    )
    return pair_frame(blocks, diversity=vendi_name(q))


def summarise_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Average pair measures per configuration: quality and performance in %, n_questions.

    Every question weighs equally; pairs with no value of a measure (NaN) are skipped by it.

    Returns
    -------
    pandas.DataFrame
        ``dataset, config_id, n_questions, quality, diversity, performance``, then
        ``coverage`` (%) and ``length_chars`` when the pair table has them (tables written
        before they were measured do not).
    """
    g = pairs.groupby(["dataset", "config_id"], sort=True)
    extra = {c: (c, "mean") for c in ("coverage", "length_chars") if c in pairs.columns}
    out = g.agg(
        n_questions=("question_id", "size"),
        quality=("quality", "mean"),
        diversity=("diversity", "mean"),
        performance=("performance", "mean"),
        **extra,
    ).reset_index()
    for c in ("quality", "performance", "coverage"):
        if c in out.columns:
            out[c] *= 100.0
    return out


# --- Studies too large for one pass: question chunks through the same engine ---------------

#: Pairs measured per chunk by :func:`iter_pair_blocks`: a chunk's arrays and pair table take
#: about 300 bytes per pair for 6 slots (measured: 316 MiB at 10⁶ pairs), whatever the study.
DEFAULT_CHUNK_PAIRS = 1_000_000


def _present_keys(frame: pd.DataFrame, proposer_column: str) -> set[tuple[str, int]]:
    keys = frame[[proposer_column, "sample_index"]].drop_duplicates()
    return {(str(t), int(s)) for t, s in keys.itertuples(index=False)}


def _fits(spec: ConfigSpec, present: set[tuple[str, int]]) -> bool:
    return all((slot.model, slot.sample_index) in present for slot in spec.proposers)


def iter_pair_blocks(
    outputs: pd.DataFrame,
    configs: Sequence[ConfigSpec],
    embeddings: Embeddings | None,
    *,
    dataset: str,
    chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
    warn: bool = True,
    **measure: Any,
) -> Iterator[list[PairBlock]]:
    """:func:`measure_blocks` over chunks of questions, so memory stays bounded at any size.

    Each chunk holds about ``chunk_pairs`` pairs (``chunk_pairs // len(configs)`` questions, at
    least one) and is measured by :func:`measure_blocks` on its questions' rows alone; every
    measure of a pair reads only its question's outputs, so the kept pairs and their values
    equal one :func:`measure_blocks` call. A configuration with a slot that no output of a
    chunk fills has no pair kept there; it is left out of that chunk's blocks and counted as
    missing. One :class:`~qdanalysis.errors.DataWarning` at the end counts the dropped pairs.

    Parameters
    ----------
    outputs, configs, embeddings, dataset
        As for :func:`measure_blocks`.
    chunk_pairs
        Target pairs per chunk (at least 1).
    warn
        Warn about dropped pairs once, after the last chunk.
    **measure
        ``aggregator``, ``request``, ``proposer_column``: as for :func:`measure_blocks`.
        ``request.pooled`` kernels are per chunk (each averages over the chunk's kept pairs).

    Yields
    ------
    list of PairBlock
        The blocks of one chunk of questions, in question order.

    Raises
    ------
    ConfigError
        If ``chunk_pairs < 1``, or a slot names a proposer type and sample that no output
        contains (both when iteration starts, before any chunk is measured).
    """
    if not (isinstance(chunk_pairs, int) and chunk_pairs >= 1):
        raise ConfigError(
            f"iter_pair_blocks chunk_pairs: expected an int >= 1; got {chunk_pairs!r}."
        )
    proposer_column = measure.get("proposer_column", "proposer")
    everywhere = _present_keys(outputs, proposer_column)
    for spec in configs:
        if not _fits(spec, everywhere):
            slot_index(outputs, [spec], proposer_column=proposer_column)  # raises
    qids = np.array(sorted(outputs["question_id"].unique()), dtype=object)
    per_chunk = max(1, chunk_pairs // max(1, len(configs)))
    by_q = outputs.groupby("question_id", sort=False).indices
    n_total = n_missing = 0
    for lo in range(0, len(qids), per_chunk):
        part = qids[lo : lo + per_chunk]
        sub = outputs.iloc[np.sort(np.concatenate([by_q[q] for q in part]))]
        present = _present_keys(sub, proposer_column)
        use = [c for c in configs if _fits(c, present)]
        n_total += len(configs) * len(part)
        n_missing += (len(configs) - len(use)) * len(part)
        if not use:
            continue
        blocks = measure_blocks(sub, use, embeddings, dataset=dataset, warn=False, **measure)
        n_missing += sum(int((~b.keep).sum()) for b in blocks)
        yield blocks
    if n_missing and warn:
        _warn_dropped(dataset, n_missing, n_total)


_MEASURES = ("quality", "diversity", "performance")


def summarise_pair_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """:func:`summarise_pairs` of the concatenation of ``frames``, holding one chunk at a time.

    ``frames`` is typically ``(pair_frame(blocks) for blocks in iter_pair_blocks(...))``.

    Per configuration it keeps the sums and counts of each measure (NaN skipped), so the means
    equal :func:`summarise_pairs` to rounding.
    """
    total: pd.DataFrame | None = None
    measures = list(_MEASURES)
    for f in frames:
        # coverage and length_chars ride along when the engine measured them (as in
        # summarise_pairs); they are summed and counted like the three measures.
        measures = [*_MEASURES, *(c for c in ("coverage", "length_chars") if c in f.columns)]
        g = f.groupby(["dataset", "config_id"], sort=False)
        part = pd.concat(
            [
                g.size().rename("n_questions"),
                g[measures].sum(),
                g[measures].count().add_suffix("_n"),
            ],
            axis=1,
        )
        total = part if total is None else total.add(part, fill_value=0)
    if total is None:
        return summarise_pairs(pd.DataFrame(columns=PAIR_COLUMNS))
    out = total.sort_index()
    for m in measures:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[m] = out[m] / out.pop(f"{m}_n").where(lambda x: x > 0)
    out["n_questions"] = out["n_questions"].astype(np.int64)
    for m in ("quality", "performance", "coverage"):
        if m in out.columns:
            out[m] *= 100.0
    return out.reset_index()[["dataset", "config_id", "n_questions", *measures]]
