"""The whole analysis as one library call: an outputs table and an :class:`AnalysisSpec` in,
QD table and fits out.

:func:`analyze` is what ``python -m qdanalysis.fit`` and the notebooks run: choose proposer
rows, build (or read) configurations, embed outputs (cached), measure every configuration
(:mod:`qdanalysis.analysis.pairs`), regress per dataset. Every choice that shapes the numbers is
a field of the frozen :class:`AnalysisSpec`, built once by the caller, passed whole and stored on
the :class:`Analysis`; the tables derived later (sensitivity, bootstrap, methods) read their
options from it. It writes nothing except the embedding cache; saving is the caller's job
(:mod:`qdanalysis.analysis.export`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .._hashing import file_sha256
from ..configs import AggregatorSpec, ConfigSpec, configs_from_frame, generate_configs, type_letters
from ..errors import ConfigError, DataError
from ..outputs import add_proposer_column, proposer_rows
from .aggregators import AGGREGATORS, Aggregator, PerformanceTable, get_aggregator
from .diversity import DEFAULT_TOL, _check_q, _check_tol, vendi_backend
from .embeddings import (
    CACHE_FILE,
    DEFAULT_EMBEDDING_MODEL,
    EMBEDDING_DTYPES,
    LONG_TEXT_MODES,
    Embeddings,
    default_cache_dir,
)
from .regression import (
    CI_METHODS,
    COV_TYPES,
    DEFAULT_CI,
    P_VALUE_CONVENTION,
    RegressionSpec,
    ci_cov_type,
)

__all__ = ["Analysis", "AnalysisSpec", "analyze"]

log = logging.getLogger(__name__)

_QUALITY_SOURCES = ("slot", "model")


def _check_int(name: str, value: Any, *, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ConfigError(f"AnalysisSpec.{name}: expected an int{bound}; got {value!r}.")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"AnalysisSpec.{name}: expected one of {list(choices)}; got {value!r}.")


def _check_labels(labels: Any) -> tuple[tuple[str, str], ...]:
    """``((dataset, label), ...)`` sorted by dataset, from a mapping or pairs."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    try:
        pairs = [(k, v) for k, v in items]
    except (TypeError, ValueError):
        raise ConfigError(
            f"AnalysisSpec.labels: expected a mapping dataset -> label; got {labels!r}."
        ) from None
    for k, v in pairs:
        if not (isinstance(k, str) and k and isinstance(v, str) and v.strip()):
            raise ConfigError(
                f"AnalysisSpec.labels: expected non-empty strings dataset -> label; got "
                f"{k!r} -> {v!r}."
            )
    if len({k for k, _ in pairs}) != len(pairs):
        raise ConfigError(f"AnalysisSpec.labels: expected one label per dataset; got {pairs!r}.")
    return tuple(sorted(pairs))


@dataclass(frozen=True, kw_only=True)
class AnalysisSpec:
    """Every choice of an analysis, each with its one default.

    Examples
    --------
    >>> spec = AnalysisSpec(n_proposers=4, aggregator="oracle")
    >>> AnalysisSpec.from_dict(spec.to_dict()) == spec
    True
    >>> AnalysisSpec.from_dict({"n_proposer": 4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qdanalysis.errors.ConfigError: AnalysisSpec: expected keys from [...]; got unknown ...
    """

    proposer_key: tuple[str, ...] = ("model",)
    """Columns whose joined values name a proposer type."""
    n_proposers: int = 6
    """Slots per generated configuration."""
    max_configs: int = 300
    """Generated configurations per dataset (the space is sampled down to this many)."""
    seed: int = 0
    """Seed of the configuration sampling."""
    with_replacement: bool = False
    """Let one sample fill several slots of a generated configuration."""
    aggregator: str | Aggregator = "auto"
    """A name of :data:`~qdanalysis.analysis.aggregators.AGGREGATORS`, an
    :class:`~qdanalysis.analysis.aggregators.Aggregator`, or ``"auto"``: ``"llm"`` when the
    outputs hold aggregator rows, else ``"plurality_vote"``."""
    vendi_q: float = 1.0
    """Order q of the Vendi Score (``math.inf`` allowed)."""
    vendi_tol: float = DEFAULT_TOL
    """Relative eigenvalue tolerance of the Vendi Score."""
    quality: str = "slot"
    """Quality regressed on: ``"slot"`` (mean ``correct`` of the very outputs in the slots) or
    ``"model"`` (mean of each slot type's overall accuracy, the paper's definition)."""
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """sentence-transformers model (name, local directory or cached hub id)."""
    device: str = "auto"
    """Embedding device: ``auto`` (cuda, mps, cpu), ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    batch_size: int = 64
    """Embedding batch size."""
    embedding_dtype: str = "auto"
    """Embedding precision/backend: ``auto`` (the fastest of float32, bfloat16 and, if
    installed, OpenVINO whose vectors agree with float32 on a probe of the data; a backend
    that already holds the texts in the cache is kept), ``float32``, ``bfloat16`` or
    ``openvino``. What ran is the sidecars' flat ``embedding_dtype``."""
    embedding_long_texts: str = "truncate"
    """Texts longer than the model's window: ``truncate`` (the model cuts them; the share is
    recorded) or ``chunk`` (embedded whole by chunk-and-pool)."""
    embedding_devices: tuple[str, ...] = ()
    """Two or more devices to embed with sentence-transformers' multi-process pool
    (``("cuda:0", "cuda:1")``, ``("cpu", "cpu")``); empty: one process on ``device``."""
    embedding_cluster: str | None = None
    """Embed on a Dask cluster: a scheduler address, or ``local:N`` for N local workers."""
    cov_type: str = RegressionSpec.cov_type
    """OLS covariance of the fits (``nonrobust`` is the paper's plain OLS)."""
    ddof: int = RegressionSpec.ddof
    """Degrees of freedom of the z-scores' standard deviation."""
    performance: str | None = None
    """A performance table file (:meth:`PerformanceTable.from_file
    <qdanalysis.analysis.aggregators.PerformanceTable.from_file>`): its scores replace the
    aggregator's (``aggregator`` must then be ``"auto"``)."""
    performance_sha256: str | None = None
    """SHA-256 of :attr:`performance`, filled in when None; a given one must match the file."""
    ci: str = DEFAULT_CI
    """Intervals and p-values of the headline coefficients (``Analysis.coefficients``, the
    console, the coefficient figure): ``ols`` (the fit's :attr:`cov_type`), ``hc3``,
    ``cluster`` (clustered on the questions the configurations share) or ``bootstrap`` (over
    questions, :attr:`n_boot` replicates); see
    :data:`~qdanalysis.analysis.regression.CI_METHODS`."""
    n_boot: int = 1000
    """Bootstrap replicates per dataset (used by ``ci="bootstrap"``)."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap resampling."""
    labels: tuple[tuple[str, str], ...] = ()
    """Human labels of datasets for figures and paper tables, ``((dataset, label), ...)``; a
    mapping is accepted. Datasets without one show their id."""

    def __post_init__(self) -> None:
        key = (self.proposer_key,) if isinstance(self.proposer_key, str) else self.proposer_key
        key = tuple(key)
        if not key or not all(isinstance(c, str) and c for c in key):
            raise ConfigError(
                f"AnalysisSpec.proposer_key: expected column names; got {self.proposer_key!r}."
            )
        object.__setattr__(self, "proposer_key", key)
        for name, low in (("n_proposers", 1), ("max_configs", 1), ("seed", None)):
            _check_int(name, getattr(self, name), low=low)
        _check_int("batch_size", self.batch_size, low=1)
        _check_int("ddof", self.ddof, low=0)
        if not isinstance(self.with_replacement, bool):
            raise ConfigError(
                f"AnalysisSpec.with_replacement: expected a bool; got {self.with_replacement!r}."
            )
        if isinstance(self.aggregator, str):
            _check_choice("aggregator", self.aggregator, ["auto", *AGGREGATORS])
        elif not isinstance(self.aggregator, Aggregator):
            raise ConfigError(
                "AnalysisSpec.aggregator: expected a name or an Aggregator; got "
                f"{type(self.aggregator).__name__}."
            )
        q = _check_q(self.vendi_q, name="AnalysisSpec.vendi_q")
        object.__setattr__(self, "vendi_q", q)
        tol = _check_tol(self.vendi_tol, name="AnalysisSpec.vendi_tol")
        object.__setattr__(self, "vendi_tol", tol)
        _check_choice("quality", self.quality, _QUALITY_SOURCES)
        _check_choice("embedding_dtype", self.embedding_dtype, EMBEDDING_DTYPES)
        _check_choice("embedding_long_texts", self.embedding_long_texts, LONG_TEXT_MODES)
        object.__setattr__(self, "embedding_devices", tuple(self.embedding_devices))
        _check_choice("cov_type", self.cov_type, COV_TYPES)
        _check_choice("ci", self.ci, list(CI_METHODS))
        ci_cov_type(self.ci, self.cov_type)  # refuses ci != "ols" with a robust cov_type
        _check_int("n_boot", self.n_boot, low=2)
        _check_int("bootstrap_seed", self.bootstrap_seed)
        object.__setattr__(self, "labels", _check_labels(self.labels))
        self._check_performance()

    def _check_performance(self) -> None:
        if self.performance is None:
            if self.performance_sha256 is not None:
                raise ConfigError(
                    "AnalysisSpec.performance_sha256: expected None without a performance file; "
                    f"got {self.performance_sha256!r}."
                )
            return
        path = Path(self.performance)
        if not path.is_file():
            raise ConfigError(
                f"AnalysisSpec.performance: expected a performance table file; got "
                f"{self.performance!r}, which does not exist. Check the path."
            )
        if self.aggregator != "auto":
            raise ConfigError(
                f"AnalysisSpec.aggregator: expected 'auto' with performance={self.performance!r} "
                f"(the table's scores replace the aggregator's); got {self.aggregator_name!r}. "
                "Drop one of the two."
            )
        object.__setattr__(self, "performance", str(path))
        sha = file_sha256(path)
        if self.performance_sha256 is None:
            object.__setattr__(self, "performance_sha256", sha)
        elif self.performance_sha256 != sha:
            raise ConfigError(
                f"AnalysisSpec.performance_sha256: expected the hash of {self.performance!r}; got "
                f"{self.performance_sha256!r}, the file's is {sha!r} (it changed since)."
            )

    def label(self, dataset: str) -> str:
        """The human label of ``dataset`` (its id without one)."""
        return dict(self.labels).get(dataset, dataset)

    @property
    def aggregator_name(self) -> str:
        """The aggregator's name (``"auto"`` until :func:`analyze` resolves it)."""
        return self.aggregator if isinstance(self.aggregator, str) else self.aggregator.name

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for sidecars): ``vendi_q`` ∞ as ``"inf"``, the aggregator by name."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["aggregator"] = self.aggregator_name
        d["proposer_key"] = list(self.proposer_key)
        d["embedding_devices"] = list(self.embedding_devices)
        d["vendi_q"] = "inf" if math.isinf(self.vendi_q) else self.vendi_q
        d["labels"] = dict(self.labels)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisSpec:
        """Inverse of :meth:`to_dict` (aggregators by name); unknown keys are rejected by name.

        Raises
        ------
        ConfigError
            If a key is unknown or a value invalid.
        """
        allowed = sorted(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"AnalysisSpec: expected keys from {allowed}; got unknown {unknown}. "
                "Remove or rename them."
            )
        return cls(**dict(data))


@dataclass(frozen=True, kw_only=True)
class Analysis:
    """Everything :func:`analyze` computed."""

    spec: AnalysisSpec
    """The analysis's choices, with ``aggregator="auto"`` resolved."""
    aggregator: Aggregator
    """The aggregator that scored every pair (every derived table reuses it)."""
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
    embeddings: Embeddings
    """The embeddings of the proposer outputs."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """For sidecars: ``spec.to_dict()`` under ``"spec"`` and flattened, and what the run found
    (``embedding_model``: the embedder's name with its weights hash, device, truncation,
    ``vendi_backend``: :func:`~qdanalysis.analysis.diversity.vendi_backend`,
    formula, letters, configuration counts, ``score_scale``: ``"binary"`` when every ``correct``
    and user score is 0 or 1, so performance and quality are accuracies in %, else
    ``"continuous"``, so they are mean scores ×100; ``ceiling_warnings``: the messages of
    :func:`~qdanalysis.analysis.qdtable.ceiling_warnings`, also issued as
    :class:`~qdanalysis.errors.StatisticalWarning` by :func:`analyze`)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""
    bootstrap: Any = None
    """The :class:`~qdanalysis.analysis.uncertainty.BootstrapResult` behind the coefficients
    when ``spec.ci == "bootstrap"``, else None."""

    @property
    def fit_table(self) -> pd.DataFrame:
        """The QD table as the fits saw it: ``quality`` is ``quality_model`` when
        ``spec.quality == "model"`` (fit other models of the analysis on this table)."""
        return _fit_input(self.qd_table, self.spec.quality)


def _fit_input(qd: pd.DataFrame, quality: str) -> pd.DataFrame:
    # The regressor is always named quality_z; `quality` chooses which measure feeds it.
    return qd if quality == "slot" else qd.assign(quality=qd["quality_model"])


def _resolve_aggregator(outputs: pd.DataFrame, spec: AnalysisSpec) -> AnalysisSpec:
    # With a performance table the aggregator stays "auto": the table replaces it.
    if spec.aggregator != "auto" or spec.performance is not None:
        return spec
    has_agg = "role" in outputs.columns and bool((outputs["role"] == "aggregator").any())
    return replace(spec, aggregator="llm" if has_agg else "plurality_vote")


def _run_rows(outputs: pd.DataFrame, spec: AnalysisSpec) -> pd.DataFrame:
    """The aggregator rows whose specs define the configurations (``"llm"`` only)."""
    if spec.aggregator != "llm":
        return pd.DataFrame()
    runner = outputs[outputs["role"] == "aggregator"] if "role" in outputs.columns else outputs[:0]
    if runner.empty:
        raise ConfigError(
            "aggregator 'llm': expected aggregator rows (role == 'aggregator' with config_id "
            "and config); the outputs have none. Use 'plurality_vote' or 'oracle'."
        )
    if "config" not in runner.columns:
        raise DataError(
            "aggregator rows need a 'config' column (the ConfigSpec JSON) to rebuild their "
            "configurations; it is missing.",
            column="config",
        )
    return runner


def _proposers(outputs: pd.DataFrame, spec: AnalysisSpec) -> pd.DataFrame:
    """The proposer rows with their ``proposer`` type column; refuses outputs without any."""
    rows = add_proposer_column(proposer_rows(outputs), list(spec.proposer_key))
    if rows.empty:
        raise DataError(
            "expected proposer rows (no role, or role 'proposer'); the outputs have none."
        )
    return rows


def _score_fixes(binary: bool) -> str:
    """The aggregators that can score a dataset without answer keys (binary ``correct`` or not)."""
    fits = [
        "aggregator='llm' with a run's aggregator rows (role == 'aggregator')",
        "scores computed elsewhere as a performance table (performance=FILE with columns "
        "config_id or name, question_id, performance in [0, 1]; or "
        "aggregator=PerformanceTable(...))",
    ]
    if binary:
        fits.insert(0, "use aggregator='oracle' (any slot correct: an upper bound, not a vote)")
    return f"Options that fit: {'; '.join(fits)}."


def _check_scores(rows: pd.DataFrame, spec: AnalysisSpec) -> dict[str, bool]:
    """Dataset -> whether its ``correct`` is binary (0/1); refuses an aggregator that cannot
    score a dataset (run before configurations and embeddings, so it fails in seconds).

    Raises
    ------
    ConfigError
        If ``plurality_vote`` meets a dataset without answer keys, or ``oracle`` one whose
        ``correct`` is continuous (the best slot's judge score is no ensemble accuracy).
    """
    binary: dict[str, bool] = {}
    name = spec.aggregator_name if spec.performance is None else "performance"
    for ds, g in rows.groupby("dataset", sort=True):
        correct = g["correct"].dropna()
        binary[str(ds)] = is_bin = bool(correct.isin([0.0, 1.0]).all())
        k = g["answer_key"] if "answer_key" in g.columns else pd.Series(dtype=object)
        keys = bool((k.notna() & (k.astype(str).str.strip() != "")).any())
        if name == "plurality_vote" and not keys:
            expected, why = "answer keys", "plurality_vote votes on answer keys"
        elif name == "oracle" and not is_bin:
            expected = "a binary (0/1) correct"
            why = (
                "oracle takes each question's best slot score, and on continuous scores (e.g. "
                "judge preferences) that is a best-of-n score, not an ensemble accuracy"
            )
        else:
            continue
        kind = "binary (0/1)" if is_bin else f"continuous in [{correct.min():g}, {correct.max():g}]"
        found = "answer keys present" if keys else "no answer keys (answer_key empty)"
        raise ConfigError(
            f"dataset {ds!r}: aggregator {name!r} cannot score it: expected {expected}; got "
            f"correct {kind} and {found}; {why}. {_score_fixes(is_bin)}"
        )
    return binary


def _letters(rows: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Dataset -> proposer type -> its letter in configuration names."""
    return {
        str(ds): type_letters(g["proposer"].unique().tolist()) for ds, g in rows.groupby("dataset")
    }


def _measure(
    rows: pd.DataFrame,
    configs: Mapping[str, Sequence[ConfigSpec]],
    emb: Embeddings,
    spec: AnalysisSpec,
    aggregator: Aggregator,
    letters: Mapping[str, Mapping[str, str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The QD table and the pair table, with the spec's Vendi order and tolerance."""
    from .qdtable import build_qd_table

    return build_qd_table(
        rows,
        configs,
        emb,
        q=spec.vendi_q,
        tol=spec.vendi_tol,
        aggregator=aggregator,
        letters=letters,
    )


def _configs(
    rows: pd.DataFrame, outputs: pd.DataFrame, spec: AnalysisSpec
) -> dict[str, list[ConfigSpec]]:
    """A run's configurations (``"llm"``) or generated ones, per dataset.

    Generated configurations carry an ``oracle`` aggregator spec for ``"oracle"`` and a
    ``plurality_vote`` one otherwise (their ids do not depend on a user-supplied aggregator).
    """
    runner = _run_rows(outputs, spec)
    kind = "oracle" if spec.aggregator == "oracle" else "plurality_vote"
    configs: dict[str, list[ConfigSpec]] = {}
    for ds, g in rows.groupby("dataset", sort=True):
        r = runner[runner["dataset"] == ds] if not runner.empty else runner
        if not r.empty:
            configs[str(ds)] = configs_from_frame(r)
        else:
            configs[str(ds)] = generate_configs(
                g,
                n_proposers=spec.n_proposers,
                max_configs=spec.max_configs,
                seed=spec.seed,
                with_replacement=spec.with_replacement,
                aggregator=AggregatorSpec(kind=kind),
            )
        log.info("dataset %s: %d configurations", ds, len(configs[str(ds)]))
    return configs


def _ceiling_warnings(qd: pd.DataFrame) -> list[str]:
    """Warn (a StatisticalWarning per dataset, where the fit is made) when performance sits at
    the ceiling or barely varies (:func:`~qdanalysis.analysis.qdtable.ceiling_warnings`); the
    messages are kept in :attr:`Analysis.parameters` for the sidecars."""
    from .qdtable import ceiling_warnings

    return ceiling_warnings(qd)


@dataclass(frozen=True)
class _Prepared:
    """What :func:`analyze` settles before embedding anything."""

    spec: AnalysisSpec
    rows: pd.DataFrame
    aggregator: Aggregator
    configs: dict[str, list[ConfigSpec]]
    letters: dict[str, dict[str, str]]
    score_scale: str


def _prepare(outputs: pd.DataFrame, spec: AnalysisSpec) -> _Prepared:
    """Resolve the aggregator, check it fits the scores, build the configurations."""
    spec = _resolve_aggregator(outputs, spec)
    rows = _proposers(outputs, spec)
    binary = _check_scores(rows, spec)
    aggregator: Aggregator
    if spec.performance is not None:
        aggregator = PerformanceTable.from_file(spec.performance)
    else:
        aggregator = get_aggregator(spec.aggregator, outputs)
    configs = _configs(rows, outputs, spec)
    letters = _letters(rows)
    if isinstance(aggregator, PerformanceTable) and aggregator.keyed_by_name:
        names = {
            ds: [(c.config_id, "".join(letters[ds][t] for t in c.types)) for c in cs]
            for ds, cs in configs.items()
        }
        aggregator = aggregator.with_config_ids(names)
    table_binary = not isinstance(aggregator, PerformanceTable) or aggregator.is_binary
    scale = "binary" if all(binary.values()) and table_binary else "continuous"
    return _Prepared(spec, rows, aggregator, configs, letters, scale)


def _embed(
    texts: list[str], spec: AnalysisSpec, embedder: Any, cache: str | Path | bool, progress: bool
) -> tuple[Embeddings, Any]:
    from .embeddings import EmbeddingCache, SentenceTransformerEmbedder, embed_texts

    created = embedder is None
    if embedder is None:
        options: dict[str, Any] = {"device": spec.device, "batch_size": spec.batch_size}
        options.update(dtype=spec.embedding_dtype, long_texts=spec.embedding_long_texts)
        embedder = SentenceTransformerEmbedder(
            spec.embedding_model, devices=spec.embedding_devices or None, **options
        )
    store = None
    if cache is not False:
        base = default_cache_dir() if cache is True else Path(cache)
        store = EmbeddingCache(base / CACHE_FILE)
    try:
        if spec.embedding_cluster is None:
            return embed_texts(texts, embedder, cache=store, progress=progress), embedder
        from .embed_cluster import DaskEmbedder, dask_client

        with dask_client(spec.embedding_cluster) as client:
            dask = DaskEmbedder(embedder, client)
            return embed_texts(texts, dask, cache=store, progress=progress), dask
    finally:
        if store is not None:
            store.close()
        if created and callable(getattr(embedder, "close", None)):
            embedder.close()  # a multi-process pool, if this call started one


def _parameters(
    spec: AnalysisSpec, emb: Embeddings, embedder: Any, extra: Mapping[str, Any]
) -> dict[str, Any]:
    # Flat keys for readers of sidecars; "spec" round-trips through AnalysisSpec.from_dict. The
    # flat embedding_model is what embedded (name and weights hash), not the requested name.
    return {
        **spec.to_dict(),
        "spec": spec.to_dict(),
        "embedding_model": emb.model,
        "embedding_device": emb.device,
        "embedding_dtype": getattr(embedder, "dtype", None),
        "embedding_backend_choice": emb.extra.get("backend_choice"),
        "embedding_long_texts": emb.extra.get("long_texts"),
        "n_long_texts": emb.extra.get("n_long"),
        "max_seq_length": emb.max_seq_length,
        "n_texts": emb.n_texts,
        "n_truncated": emb.n_truncated,
        "truncated_share": round(emb.truncated_share, 6),
        "vendi_backend": vendi_backend(),
        **extra,
    }


def analyze(
    outputs: pd.DataFrame,
    spec: AnalysisSpec | None = None,
    *,
    embedder: Any = None,
    cache: str | Path | bool = True,
    progress: bool = True,
) -> Analysis:
    """Run the quality–diversity analysis on a validated outputs table.

    Parameters
    ----------
    outputs
        An outputs table (see :func:`qdanalysis.outputs.load_outputs`), any number of datasets.
    spec
        Every choice of the analysis (default ``AnalysisSpec()``).
    embedder
        Any :class:`~.embeddings.Embedder`; built from the spec's embedding fields when None.
    cache
        Embedding cache directory; ``True`` (default) is
        :func:`~qdanalysis.analysis.embeddings.default_cache_dir`, ``False`` embeds everything and
        stores nothing.
    progress
        Progress bars on stderr.

    Returns
    -------
    Analysis

    Raises
    ------
    DataError
        If the outputs have no proposer rows.
    ConfigError
        If the aggregator does not fit the outputs (``"llm"`` without aggregator rows,
        ``"plurality_vote"`` without answer keys, ``"oracle"`` on continuous ``correct``),
        raised before anything is embedded.
    """
    from .regression import coefficient_table, fit_by

    timings: dict[str, float] = {}
    t = time.perf_counter()
    prep = _prepare(outputs, spec if spec is not None else AnalysisSpec())
    spec, rows, aggregator, configs, letters = (
        prep.spec,
        prep.rows,
        prep.aggregator,
        prep.configs,
        prep.letters,
    )
    _check_label_ids(spec, rows)
    timings["configs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    emb, embedder = _embed(rows["output"].tolist(), spec, embedder, cache, progress)
    timings["embed_s"] = time.perf_counter() - t
    t = time.perf_counter()
    qd, pairs = _measure(rows, configs, emb, spec, aggregator, letters)
    timings["measure_s"] = time.perf_counter() - t
    t = time.perf_counter()
    reg = RegressionSpec(cov_type=ci_cov_type(spec.ci, spec.cov_type), ddof=spec.ddof)
    fits = fit_by(_fit_input(qd, spec.quality), reg, pairs=pairs)
    timings["fit_s"] = time.perf_counter() - t
    extra = {**_found(reg, prep), "ceiling_warnings": _ceiling_warnings(qd)}
    res = Analysis(
        spec=spec,
        aggregator=aggregator,
        qd_table=qd,
        pairs=pairs,
        coefficients=coefficient_table(fits),
        fits=fits,
        configs=configs,
        embeddings=emb,
        parameters=_parameters(spec, emb, embedder, extra),
        timings=timings,
    )
    return _with_ci(res, progress)


def _found(reg: RegressionSpec, prep: _Prepared) -> dict[str, Any]:
    """What the run settled, for sidecars (beside the spec)."""
    return {
        "formula": reg.formula,
        "letters": prep.letters,
        "n_configs": {ds: len(c) for ds, c in prep.configs.items()},
        "score_scale": prep.score_scale,
        "ci_method": CI_METHODS[prep.spec.ci],
        "p_value_convention": P_VALUE_CONVENTION,
    }


def _check_label_ids(spec: AnalysisSpec, rows: pd.DataFrame) -> None:
    """Refuse labels of datasets the outputs do not have (a typo would go unseen), before any
    embedding."""
    have = set(rows["dataset"].astype(str))
    unknown = sorted(k for k, _ in spec.labels if k not in have)
    if unknown:
        raise ConfigError(
            f"AnalysisSpec.labels: expected datasets from {sorted(have)}; got unknown "
            f"{unknown}. Fix the dataset ids of the labels."
        )


def _with_ci(res: Analysis, progress: bool) -> Analysis:
    """The analysis with the ``ci`` column, and the bootstrap's inference for ``bootstrap``."""
    coefs = res.coefficients.assign(ci=res.spec.ci)
    if res.spec.ci != "bootstrap":
        return replace(res, coefficients=coefs)
    from .uncertainty import bootstrap_coefficients, bootstrap_coefs

    t = time.perf_counter()
    boot = bootstrap_coefs(
        res, n_boot=res.spec.n_boot, seed=res.spec.bootstrap_seed, progress=progress
    )
    res.timings["bootstrap_s"] = time.perf_counter() - t
    params = {**res.parameters, "bootstrap": boot.parameters}
    return replace(
        res,
        coefficients=bootstrap_coefficients(coefs, boot),
        bootstrap=boot,
        parameters=params,
    )
