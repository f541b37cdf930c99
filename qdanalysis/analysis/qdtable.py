"""The QD table: quality, diversity and performance of every configuration, one row each.

Asks the engine (:mod:`qdanalysis.analysis.pairs`) for every (configuration, question) pair's
quality (mean ``correct`` of the slot outputs), diversity (Vendi Score of their embeddings) and
performance (what the :class:`~qdanalysis.analysis.aggregators.Aggregator` scores), and averages
them per configuration, each question weighing equally. The ``method`` and ``aggregator``
columns say what produced each configuration's performance.

Neighbours: :mod:`qdanalysis.analysis.pairs` (the engine), :mod:`qdanalysis.configs` (the
configurations), :mod:`qdanalysis.analysis.regression` (the fit).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..configs import ConfigSpec, configs_frame, type_letters
from ..errors import ConfigError
from .aggregators import Aggregator, PluralityVote
from .diversity import DEFAULT_TOL
from .embeddings import Embeddings
from .pairs import PairRequest, measure_blocks, pair_frame, summarise_pairs, vendi_name

__all__ = ["QD_COLUMNS", "build_qd_table", "config_meta"]

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
        ``llm:<model>``, ``plurality_vote`` or ``none`` for a single model).
    pairs : pandas.DataFrame
        :data:`~qdanalysis.analysis.pairs.PAIR_COLUMNS`, quality and performance in [0, 1].
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
        t = meta.merge(summarise_pairs(pairs), on="config_id", how="inner")
        t["dataset"] = ds
        tables.append(t)
    qd = pd.concat(tables, ignore_index=True)
    qd["embedding_model"] = embeddings.model if embeddings is not None else None
    qd["vendi_q"] = float(q)
    qd = qd[list(QD_COLUMNS)].sort_values(["dataset", "config_id"]).reset_index(drop=True)
    return qd, pd.concat(pair_tables, ignore_index=True)
