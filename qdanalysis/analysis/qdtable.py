"""The QD table: quality, diversity and performance of every configuration, one row each.

Asks the engine (:mod:`qdanalysis.analysis.pairs`) for every (configuration, question) pair's
quality (mean ``correct`` of the slot outputs), diversity (Vendi Score of their embeddings) and
performance (what the :class:`~qdanalysis.analysis.aggregators.Aggregator` scores), and averages
them per configuration, each question weighing equally. The ``method`` and ``aggregator``
columns say what produced each configuration's performance.

Beside them, what the ensemble literature asks about: ``coverage`` (any slot correct, the
oracle's score) and the aggregator's ``selection_loss`` (coverage − performance), the mean
pairwise correlation of the slots' errors ``error_corr`` (:func:`error_correlation`) with the
effective number of independent proposers ``n_eff`` (:func:`effective_proposers`), and the
slots' output length ``length_chars``. :func:`ceiling_warnings` flags datasets whose
performance sits at the ceiling, where α and β say little.

Neighbours: :mod:`qdanalysis.analysis.pairs` (the engine), :mod:`qdanalysis.configs` (the
configurations), :mod:`qdanalysis.analysis.regression` (the fit).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..configs import ConfigSpec, configs_frame, type_letters
from ..errors import ConfigError, StatisticalWarning
from .aggregators import Aggregator, PluralityVote
from .diversity import DEFAULT_TOL
from .embeddings import Embeddings
from .pairs import (
    PairBlock,
    PairRequest,
    measure_blocks,
    pair_frame,
    summarise_pairs,
    vendi_name,
)

__all__ = [
    "CEILING_MAX",
    "CEILING_MEAN",
    "CEILING_SPREAD",
    "ENSEMBLE_COLUMNS",
    "QD_COLUMNS",
    "build_qd_table",
    "ceiling_warnings",
    "config_meta",
    "effective_proposers",
    "ensemble_measures",
    "error_correlation",
    "selection_loss",
]

#: What a configuration is (the columns of :func:`~qdanalysis.configs.configs_frame`).
_DESCRIPTION = ("config_id", "name", "proposers", "samples", "method", "n_proposers", "n_models")
QD_COLUMNS = (
    "dataset",
    *_DESCRIPTION,
    "n_questions",
    "quality",
    "quality_model",
    "diversity",
    "performance",
    "embedding_model",
    "vendi_q",
    "aggregator",
)
#: What the ensemble literature asks about, after :data:`QD_COLUMNS` in the QD table:
#: ``coverage`` (mean over the pairs of the best slot's ``correct``, i.e. any slot correct, %:
#: the oracle's performance), ``selection_loss`` (:func:`selection_loss`, points),
#: ``error_corr`` (ρ, :func:`error_correlation`), ``n_eff`` (:func:`effective_proposers`),
#: ``length_chars`` (mean number of characters of the slots' outputs).
ENSEMBLE_COLUMNS = ("coverage", "selection_loss", "error_corr", "n_eff", "length_chars")
#: Mean performance (%) above which a dataset is at the ceiling (:func:`ceiling_warnings`).
CEILING_MEAN = 95.0
#: Best configuration's performance (%) at or above which a dataset is at the ceiling.
CEILING_MAX = 99.5
#: Standard deviation of performance across configurations (points) below which it barely varies.
CEILING_SPREAD = 1.0
#: Configurations per step of :func:`error_correlation` (bounds its temporary arrays).
_CORR_CHUNK = 2048


def _model_accuracy(outputs: pd.DataFrame, proposer_column: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in outputs.groupby(proposer_column)["correct"].mean().items()}


def config_meta(
    rows: pd.DataFrame,
    configs: Sequence[ConfigSpec],
    *,
    aggregator: Aggregator,
    letters: Mapping[str, str],
    proposer_column: str = "proposer",
) -> pd.DataFrame:
    """What each configuration is: the descriptive columns of the QD table for one dataset.

    Returns
    -------
    pandas.DataFrame
        ``config_id, name, proposers, samples, method, n_proposers, n_models`` (see
        :func:`~qdanalysis.configs.configs_frame`), ``quality_model`` (mean over slots of each
        type's overall accuracy in ``rows``, %) and ``aggregator`` (what produced the
        configuration's performance, :meth:`Aggregator.label`).
    """
    meta = configs_frame(configs, letters=letters).drop(columns=["config"])
    acc = _model_accuracy(rows, proposer_column)
    meta["quality_model"] = [
        100.0 * float(np.mean([acc[t] for t in json.loads(p)])) for p in meta["proposers"]
    ]
    meta["aggregator"] = [aggregator.label(c) for c in configs]
    return meta


def _chunk_correlation(e: NDArray[np.float64], keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Mean pairwise error correlation of a ``(c, Q, n)`` chunk; see :func:`error_correlation`."""
    n = e.shape[2]
    w = keep[:, :, None]
    count = np.maximum(w.sum(axis=1), 1)
    d = np.where(w, e - np.where(w, e, 0.0).sum(axis=1, keepdims=True) / count[:, None, :], 0.0)
    cov = np.einsum("cqi,cqj->cij", d, d)
    # Constant means exactly constant (max == min over the kept questions), not a tiny variance:
    # centring a constant non-binary column leaves rounding noise that would correlate.
    varies = np.where(w, e, -np.inf).max(axis=1) > np.where(w, e, np.inf).min(axis=1)
    i, j = np.triu_indices(n, 1)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    ok = varies[:, i] & varies[:, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(cov[:, i, j] / (sd[:, i] * sd[:, j]), -1.0, 1.0)
    n_ok = ok.sum(axis=1)
    total = np.where(ok, r, 0.0).sum(axis=1)
    return np.where(n_ok > 0, total / np.maximum(n_ok, 1), np.nan)


def error_correlation(correct: NDArray[np.float64], keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Mean pairwise correlation ρ, across questions, of the slots' errors, per configuration.

    Parameters
    ----------
    correct
        ``(C, Q, n)`` the slots' ``correct``
        (:attr:`~qdanalysis.analysis.aggregators.SlotBlock.correct`).
    keep
        ``(C, Q)``: the pairs to use (the measured ones).

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64; NaN where no pair of slots has a defined correlation (one slot, or
        fewer than two slots whose errors vary).

    Notes
    -----
    The error of slot i on question t is e_it = 1 − correct_it (for continuous scores, the
    shortfall from a perfect score). For each unordered pair of slot *positions* i < j, r_ij is
    the Pearson correlation of (e_it) and (e_jt) over the configuration's kept questions, and
    ρ is the mean of the defined r_ij. Slots are positions, whoever fills them: two samples of
    one model are two slots with their own outputs (r_ij says how much resampling decorrelates
    their errors; identical outputs give 1), and one sample filling two slots (sampling with
    replacement) gives r_ij = 1 whenever its errors vary. A slot whose error is constant over
    the questions (always right, or always wrong) has no correlation with anything: every pair
    that includes it is left out of the mean rather than counted as 0 or 1, so ρ describes the
    slots that do err. Configurations where that leaves no pair get NaN.

    Examples
    --------
    Slots 0 and 1 err together (r = 1); slot 2's errors are uncorrelated with theirs (r = 0):

    >>> c = np.array([[[1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]]], dtype=float)
    >>> error_correlation(c, np.ones((1, 4), dtype=bool)).round(4).tolist()
    [0.3333]
    """
    e = 1.0 - np.asarray(correct, dtype=np.float64)
    k = np.asarray(keep, dtype=bool)
    if e.ndim != 3 or k.shape != e.shape[:2]:
        raise ConfigError(
            f"error_correlation: expected correct (C, Q, n) and keep (C, Q); got {e.shape} "
            f"and {k.shape}."
        )
    parts = [
        _chunk_correlation(e[s : s + _CORR_CHUNK], k[s : s + _CORR_CHUNK])
        for s in range(0, e.shape[0], _CORR_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def effective_proposers(rho: NDArray[np.float64], n: NDArray[np.int64]) -> NDArray[np.float64]:
    """Effective number of independent proposers N_eff = N / (1 + (N − 1) ρ).

    The number of independent slots whose mean error has the variance of the mean of N slots
    with equal variances and pairwise error correlation ρ: N when errors are uncorrelated, 1
    when they are identical, above N when they are anti-correlated (∞ when 1 + (N − 1) ρ ≤ 0).
    One slot gives 1 whatever ρ; an undefined ρ (NaN) gives NaN for N > 1.

    Examples
    --------
    >>> effective_proposers(np.array([0.0, 1.0, 0.2, np.nan]), np.array([6, 6, 6, 1])).tolist()
    [6.0, 1.0, 3.0, 1.0]
    """
    r = np.asarray(rho, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    den = 1.0 + (m - 1.0) * r
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, m / den, np.where(np.isnan(den), np.nan, np.inf))
    return np.asarray(np.where(m == 1, 1.0, out), dtype=np.float64)


def ensemble_measures(blocks: Sequence[PairBlock]) -> pd.DataFrame:
    """Error correlation and effective number of proposers of every configuration of ``blocks``.

    Returns
    -------
    pandas.DataFrame
        ``config_id, error_corr`` (:func:`error_correlation` over the measured pairs),
        ``n_eff`` (:func:`effective_proposers`).
    """
    frames = []
    for b in blocks:
        rho = error_correlation(b.slots.correct, b.keep)
        n = np.array([c.n_proposers for c in b.configs])
        frames.append(
            pd.DataFrame(
                {
                    "config_id": b.slots.config_ids.tolist(),
                    "error_corr": rho,
                    "n_eff": effective_proposers(rho, n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def selection_loss(table: pd.DataFrame) -> pd.Series:
    """The aggregator's selection loss per configuration: ``coverage − performance`` (points).

    What the aggregator leaves on the table when some slot was right. Plurality voting can only
    pick a slot's answer, so its loss is ≥ 0; an LLM aggregator can write a correct answer no
    slot gave, so its loss can be negative.
    """
    return table["coverage"] - table["performance"]


def _ceiling_message(ds: str, t: NDArray[np.float64]) -> str | None:
    """The warning for one dataset's performances (%), or None when they are not flagged."""
    sd = float(t.std(ddof=1)) if t.size > 1 else float("nan")
    stats = (
        f"mean {t.mean():.1f}, max {t.max():.1f}, SD {sd:.2f} points across {t.size} configurations"
    )
    if t.mean() > CEILING_MEAN or t.max() >= CEILING_MAX:
        return (
            f"dataset {ds!r}: performance sits near the ceiling ({stats}; flagged when mean > "
            f"{CEILING_MEAN:g} or max >= {CEILING_MAX:g}). Configurations cannot gain above "
            "100, so their differences are compressed at the top and α and β are pulled toward "
            "0: a small β here does not show that diversity does not matter. Prefer harder "
            "questions, or read coverage and selection_loss."
        )
    if sd < CEILING_SPREAD:
        return (
            f"dataset {ds!r}: performance barely varies across configurations ({stats}; "
            f"flagged when SD < {CEILING_SPREAD:g}). α and β are points per SD of quality and "
            "diversity, so they are necessarily small here (α² + β² + 2αβr, the fitted "
            "variance, cannot exceed performance's): compare their signs, t-statistics and R² "
            "with another dataset's or the paper's, not their sizes."
        )
    return None


def ceiling_warnings(qd_table: pd.DataFrame, *, warn: bool = True) -> list[str]:
    """Flag datasets whose performance sits at the ceiling or barely varies.

    A dataset is at the ceiling when its mean performance across configurations exceeds
    :data:`CEILING_MEAN` (95) or its best configuration reaches :data:`CEILING_MAX` (99.5);
    otherwise it barely varies when the standard deviation across configurations (ddof = 1) is
    below :data:`CEILING_SPREAD` (1 point). The thresholds apply to the performance column as
    it is (accuracy in %, or a continuous score ×100).

    Parameters
    ----------
    qd_table
        The QD table (``dataset`` and ``performance`` columns).
    warn
        Issue each message as a :class:`~qdanalysis.errors.StatisticalWarning`.

    Returns
    -------
    list of str
        One message per flagged dataset, saying what the flag means for α and β.
    """
    out = []
    for ds, g in qd_table.groupby("dataset", sort=True):
        t = g["performance"].dropna().to_numpy(dtype=np.float64)
        msg = _ceiling_message(str(ds), t) if t.size else None
        if msg is not None:
            out.append(msg)
    if warn:
        for m in out:
            warnings.warn(m, StatisticalWarning, stacklevel=2)
    return out


def _dataset_inputs(
    outputs: pd.DataFrame, configs: Mapping[str, Sequence[ConfigSpec]], ds: str
) -> tuple[pd.DataFrame, list[ConfigSpec]]:
    """One dataset's proposer rows and configurations; refuses a dataset without either."""
    rows = outputs[outputs["dataset"] == ds]
    if rows.empty:
        raise ConfigError(f"dataset {ds!r}: expected proposer rows; the outputs have none.")
    cfgs = list(configs[ds])
    if not cfgs:
        raise ConfigError(f"dataset {ds!r}: expected at least one configuration; got none.")
    return rows, cfgs


def _dataset_letters(
    rows: pd.DataFrame,
    letters: Mapping[str, Mapping[str, str]] | None,
    ds: str,
    proposer_column: str,
) -> dict[str, str]:
    """The dataset's proposer type -> letter map: the one given, else one letter per type."""
    if letters is not None and ds in letters:
        return dict(letters[ds])
    return type_letters(rows[proposer_column].unique().tolist())


def _config_rows(
    meta: pd.DataFrame, pairs: pd.DataFrame, blocks: Sequence[PairBlock]
) -> pd.DataFrame:
    """One dataset's QD-table rows: description, means over the pairs, ensemble measures."""
    t = meta.merge(summarise_pairs(pairs), on="config_id", how="inner")
    t = t.merge(ensemble_measures(blocks), on="config_id", how="left")
    t["selection_loss"] = selection_loss(t)
    return t


def build_qd_table(
    outputs: pd.DataFrame,
    configs: Mapping[str, Sequence[ConfigSpec]],
    embeddings: Embeddings | None,
    *,
    q: float = 1.0,
    tol: float = DEFAULT_TOL,
    aggregator: Aggregator | None = None,
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
    q, tol
        Vendi order and eigenvalue tolerance.
    aggregator
        What scores each pair (default
        :class:`~qdanalysis.analysis.aggregators.PluralityVote`).
    proposer_column
        Column naming each row's proposer type.
    letters
        Dataset -> proposer type -> letter for the ``name`` column (default:
        :func:`~qdanalysis.configs.type_letters` per dataset).

    Returns
    -------
    qd_table : pandas.DataFrame
        Columns :data:`QD_COLUMNS`: ``dataset, config_id, name`` (one letter per slot),
        ``proposers`` (JSON array of the slots' types in slot order), ``samples`` (JSON array of
        their sample indices), ``method`` (the configuration's method), ``n_proposers, n_models,
        n_questions``, ``quality`` (mean proposer ``correct`` over the pairs, %),
        ``quality_model`` (mean over slots of each type's overall accuracy in the dataset, %:
        the paper's definition), ``diversity`` (mean Vendi Score), ``performance`` (ensemble
        score, %), ``embedding_model, vendi_q``, ``aggregator`` (what produced the
        performance: ``plurality_vote``, ``oracle``, a user table's name or, for a run's rows,
        ``llm:<model>``, ``plurality_vote`` or ``none`` for a single model), then the
        ensemble measures of :data:`ENSEMBLE_COLUMNS`.
    pairs : pandas.DataFrame
        :data:`~qdanalysis.analysis.pairs.PAIR_COLUMNS` (:func:`~.pairs.pair_frame`).
    """
    agg = aggregator if aggregator is not None else PluralityVote()
    request = PairRequest(vendi_orders=(q,), tol=tol)
    tables, pair_tables = [], []
    for ds in sorted(configs):
        rows, cfgs = _dataset_inputs(outputs, configs, ds)
        blocks = measure_blocks(
            rows,
            cfgs,
            embeddings,
            dataset=ds,
            aggregator=agg,
            request=request,
            proposer_column=proposer_column,
        )
        pairs = pair_frame(blocks, diversity=vendi_name(q))
        pair_tables.append(pairs)
        lets = _dataset_letters(rows, letters, ds, proposer_column)
        meta = config_meta(
            rows, cfgs, aggregator=agg, letters=lets, proposer_column=proposer_column
        )
        t = _config_rows(meta, pairs, blocks)
        t["dataset"] = ds
        tables.append(t)
    qd = pd.concat(tables, ignore_index=True)
    qd["embedding_model"] = embeddings.model if embeddings is not None else None
    qd["vendi_q"] = float(q)
    cols = [*QD_COLUMNS, *ENSEMBLE_COLUMNS]
    qd = qd[cols].sort_values(["dataset", "config_id"]).reset_index(drop=True)
    return qd, pd.concat(pair_tables, ignore_index=True)
