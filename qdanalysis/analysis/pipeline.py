"""The whole analysis as one library call: outputs table in, QD table and fits out.

:func:`analyze` is what ``python -m qdanalysis.fit`` and the notebooks run: choose proposer
rows, build (or read) configurations, embed outputs (cached), measure every configuration,
regress per dataset. It writes nothing except the embedding cache; saving is the caller's job
(:mod:`qdanalysis.analysis.export`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..configs import AggregatorSpec, ConfigSpec, configs_from_frame, generate_configs, type_letters
from ..errors import ConfigError, DataError
from ..outputs import add_proposer_column, proposer_rows
from .diversity import DEFAULT_TOL

__all__ = ["AGGREGATOR_CHOICES", "Analysis", "analyze", "default_cache_dir"]

log = logging.getLogger(__name__)

#: ``auto`` means ``llm`` when the outputs hold aggregator rows, else ``plurality_vote``.
AGGREGATOR_CHOICES = ("auto", "plurality_vote", "oracle", "llm")


def default_cache_dir() -> Path:
    """``$QDANALYSIS_CACHE_DIR`` when set, else ``data/cache`` (relative to the cwd)."""
    return Path(os.environ.get("QDANALYSIS_CACHE_DIR", "data/cache"))


@dataclass(frozen=True, kw_only=True)
class Analysis:
    """Everything :func:`analyze` computed."""

    qd_table: pd.DataFrame
    """One row per dataset and configuration (see
    :func:`qdanalysis.analysis.qdtable.build_qd_table`)."""
    pairs: pd.DataFrame
    """One row per (configuration, question) pair, measures in [0, 1]."""
    coefficients: pd.DataFrame
    """Tidy coefficients per dataset and term
    (:func:`~qdanalysis.analysis.regression.coefficient_table`)."""
    fits: Mapping[str, Any]
    """Dataset -> :class:`~qdanalysis.analysis.regression.OLSResult`."""
    configs: Mapping[str, Sequence[ConfigSpec]]
    """Dataset -> its configurations."""
    embeddings: Any
    """The :class:`~qdanalysis.analysis.embeddings.Embeddings` of the proposer outputs."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Every choice that shaped the numbers (for sidecars)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""


def analyze(
    outputs: pd.DataFrame,
    *,
    proposer_key: Sequence[str] = ("model",),
    n_proposers: int = 6,
    max_configs: int = 300,
    seed: int = 0,
    with_replacement: bool = False,
    aggregator: str = "auto",
    vendi_q: float = 1.0,
    vendi_tol: float = DEFAULT_TOL,
    quality: str = "slot",
    embedder: Any = None,
    embedding_model: str = "all-MiniLM-L6-v2",
    device: str = "auto",
    batch_size: int = 64,
    embedding_dtype: str = "float32",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    cov_type: str = "nonrobust",
    ddof: int = 1,
    progress: bool = True,
) -> Analysis:
    """Run the quality–diversity analysis on a validated outputs table.

    Parameters
    ----------
    outputs
        An outputs table (see :func:`qdanalysis.outputs.load_outputs`), any number of datasets.
    proposer_key
        Columns naming a proposer type.
    n_proposers, max_configs, seed, with_replacement
        Configuration generation (see :func:`qdanalysis.configs.generate_configs`); ignored for
        a dataset whose configurations come from aggregator rows.
    aggregator
        ``"auto"``, ``"plurality_vote"``, ``"oracle"`` or ``"llm"`` (final aggregator rows).
    vendi_q, vendi_tol
        Vendi Score order and eigenvalue tolerance.
    quality
        ``"slot"``: mean correctness of the very outputs in the slots; ``"model"``: mean of
        each slot type's overall accuracy (the paper's definition).
    embedder
        Any :class:`~qdanalysis.analysis.embeddings.Embedder`; built from ``embedding_model``,
        ``device``,
        ``batch_size`` and ``embedding_dtype`` when None.
    cache_dir, use_cache
        Embedding cache directory (default :func:`default_cache_dir`); ``use_cache=False``
        embeds everything and stores nothing.
    cov_type, ddof
        Regression covariance and z-score degrees of freedom.
    progress
        Progress bars on stderr.

    Returns
    -------
    Analysis
    """
    from .embeddings import EmbeddingCache, SentenceTransformerEmbedder, embed_texts
    from .qdtable import aggregator_scores, build_qd_table
    from .regression import RegressionSpec, coefficient_table, fit_by

    if aggregator not in AGGREGATOR_CHOICES:
        raise ConfigError(
            f"aggregator: expected one of {list(AGGREGATOR_CHOICES)}; got {aggregator!r}."
        )
    if quality not in ("slot", "model"):
        raise ConfigError(f"quality: expected 'slot' or 'model'; got {quality!r}.")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    key = list(proposer_key)
    rows = add_proposer_column(proposer_rows(outputs), key)
    if rows.empty:
        raise DataError(
            "expected proposer rows (no role, or role 'proposer'); the outputs have none."
        )
    has_agg = "role" in outputs.columns and bool((outputs["role"] == "aggregator").any())
    if aggregator == "auto":
        aggregator = "llm" if has_agg else "plurality_vote"
    runner = pd.DataFrame()
    if aggregator == "llm":
        if not has_agg:
            raise ConfigError(
                "aggregator 'llm': expected aggregator rows (role == 'aggregator' with config_id "
                "and config); the outputs have none. Use plurality_vote or oracle."
            )
        runner = outputs[outputs["role"] == "aggregator"]
        if "config" not in runner.columns:
            raise DataError(
                "aggregator rows need a 'config' column (the ConfigSpec JSON) to rebuild their "
                "configurations; it is missing.",
                column="config",
            )
    configs: dict[str, list[ConfigSpec]] = {}
    for ds, g in rows.groupby("dataset", sort=True):
        r = runner[runner["dataset"] == ds] if not runner.empty else runner
        if not r.empty:
            configs[str(ds)] = configs_from_frame(r)
        else:
            configs[str(ds)] = generate_configs(
                g,
                n_proposers=n_proposers,
                max_configs=max_configs,
                seed=seed,
                with_replacement=with_replacement,
                aggregator=AggregatorSpec(
                    kind="oracle" if aggregator == "oracle" else "plurality_vote"
                ),
            )
        log.info("dataset %s: %d configurations", ds, len(configs[str(ds)]))
    timings["configs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if embedder is None:
        embedder = SentenceTransformerEmbedder(
            embedding_model, device=device, batch_size=batch_size, dtype=embedding_dtype
        )
    timings["model_load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cache = None
    if use_cache:
        cache = EmbeddingCache(Path(cache_dir or default_cache_dir()) / "embeddings.sqlite")
    try:
        emb = embed_texts(rows["output"].tolist(), embedder, cache=cache, progress=progress)
    finally:
        if cache is not None:
            cache.close()
    timings["embed_s"] = time.perf_counter() - t
    t = time.perf_counter()
    runs = aggregator_scores(outputs) if aggregator == "llm" else None
    letters = {
        str(ds): type_letters(g["proposer"].unique().tolist()) for ds, g in rows.groupby("dataset")
    }
    qd, pairs = build_qd_table(
        rows,
        configs,
        emb,
        q=vendi_q,
        tol=vendi_tol,
        aggregator=aggregator,
        runs=runs,
        letters=letters,
    )
    timings["measure_s"] = time.perf_counter() - t
    t = time.perf_counter()
    spec = RegressionSpec(cov_type=cov_type, ddof=ddof)
    # The regressor is always named quality_z; `quality` chooses which measure feeds it.
    fit_input = qd if quality == "slot" else qd.assign(quality=qd["quality_model"])
    fits = fit_by(fit_input, spec)
    coefs = coefficient_table(fits)
    timings["fit_s"] = time.perf_counter() - t
    params: dict[str, Any] = {
        "embedding_model": emb.model,
        "embedding_device": emb.device,
        "embedding_dtype": getattr(embedder, "dtype", None),
        "max_seq_length": emb.max_seq_length,
        "n_texts": emb.n_texts,
        "n_truncated": emb.n_truncated,
        "truncated_share": round(emb.truncated_share, 6),
        "vendi_q": "inf" if math.isinf(vendi_q) else vendi_q,
        "vendi_tol": vendi_tol,
        "aggregator": aggregator,
        "quality": quality,
        "formula": spec.formula,
        "cov_type": cov_type,
        "ddof": ddof,
        "proposer_key": key,
        "n_proposers": n_proposers,
        "max_configs": max_configs,
        "seed": seed,
        "with_replacement": with_replacement,
        "letters": letters,
        "n_configs": {ds: len(c) for ds, c in configs.items()},
    }
    return Analysis(
        qd_table=qd,
        pairs=pairs,
        coefficients=coefs,
        fits=fits,
        configs=configs,
        embeddings=emb,
        parameters=params,
        timings=timings,
    )
