"""Embedding on a Dask cluster: the texts of each batch are split across the workers.

:class:`DaskEmbedder` wraps a
:class:`~qdanalysis.analysis.embeddings.SentenceTransformerEmbedder` and keeps its name, window
and token counting, so :func:`~qdanalysis.analysis.embeddings.embed_texts` (dedupe, cache,
truncation report) works unchanged; only ``encode`` runs on the workers, each of
which loads the model once from the embedder's recipe. The scheduling is Dask's own
(``Client.map``/``gather``); nothing here schedules.

Neighbours: :mod:`qdanalysis.analysis.embeddings` (the embedder and the cache);
:mod:`qdanalysis.analysis.pipeline` builds one from ``AnalysisSpec.embedding_cluster``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import ConfigError
from .embeddings import EmbeddingCache, SentenceTransformerEmbedder

__all__ = ["DaskEmbedder", "dask_client"]

# One embedder per recipe per worker process: a worker loads its model once, not per task.
_WORKER_EMBEDDERS: dict[tuple[tuple[str, Any], ...], SentenceTransformerEmbedder] = {}
_WORKER_LOCK = threading.Lock()


def _encode_on_worker(recipe: Mapping[str, Any], texts: list[str]) -> NDArray[np.float32]:
    """Run on a Dask worker: embed ``texts`` with the (cached) embedder of ``recipe``."""
    key = tuple(sorted(recipe.items()))
    with _WORKER_LOCK:
        emb = _WORKER_EMBEDDERS.get(key)
        if emb is None:
            emb = _WORKER_EMBEDDERS[key] = SentenceTransformerEmbedder(**recipe)
    return emb.encode(texts)


class DaskEmbedder:
    """An :class:`~qdanalysis.analysis.embeddings.Embedder` whose ``encode`` runs on Dask workers.

    Parameters
    ----------
    inner
        The embedder to distribute; its :meth:`recipe` rebuilds it on each worker (device
        ``auto`` resolves per worker). ``dtype="auto"`` is settled here, on the local machine,
        before any work is sent.
    client
        A ``distributed.Client``.
    min_texts_per_task
        Batches are split into at most one task per worker and at least this many texts each.

    Notes
    -----
    Vectors equal the single-process ones to float rounding (each worker runs the same model on
    its share; batches are padded per share).
    """

    def __init__(
        self, inner: SentenceTransformerEmbedder, client: Any, *, min_texts_per_task: int = 16
    ) -> None:
        if min_texts_per_task < 1:
            raise ConfigError(
                f"min_texts_per_task: expected an int >= 1; got {min_texts_per_task!r}."
            )
        self.inner = inner
        self.client = client
        self.min_texts_per_task = min_texts_per_task
        self.name = inner.name
        """The inner embedder's name: vectors are the same, so is the cache key."""
        self.max_seq_length = inner.max_seq_length
        """The inner embedder's window."""

    @property
    def unchunked_name(self) -> str | None:
        """The inner embedder's ``unchunked_name``."""
        return self.inner.unchunked_name

    @property
    def long_texts(self) -> str:
        """The inner embedder's long-text mode."""
        return self.inner.long_texts

    @property
    def dtype(self) -> str:
        """The inner embedder's backend."""
        return self.inner.dtype

    @property
    def device(self) -> str:
        """``dask:<n> workers`` (each worker resolves the inner device itself)."""
        return f"dask:{self._n_workers()} workers ({self.inner.recipe()['device']})"

    def _n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def choose_backend(
        self, texts_by_hash: Mapping[str, str], cache: EmbeddingCache | None = None
    ) -> dict[str, Any] | None:
        """Settle ``dtype="auto"`` locally (see the inner embedder's ``choose_backend``)."""
        choice = self.inner.choose_backend(texts_by_hash, cache)
        self.name = self.inner.name
        return choice

    def probe_vectors(self) -> dict[str, NDArray[np.float32]]:
        """The inner embedder's probe vectors (see its ``probe_vectors``)."""
        return self.inner.probe_vectors()

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` on the workers; rows in input order."""
        texts = list(texts)
        if not texts:
            return self.inner.encode(texts)
        k = max(1, min(self._n_workers(), len(texts) // self.min_texts_per_task))
        parts = [list(p) for p in np.array_split(np.array(texts, dtype=object), k)]
        recipe = self.inner.recipe()
        futures = self.client.map(_encode_on_worker, [recipe] * k, parts, pure=False)
        return np.vstack(self.client.gather(futures)).astype(np.float32, copy=False)

    def token_counts(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Token counts, computed locally (the tokenizer is cheap)."""
        return self.inner.token_counts(texts)


@contextlib.contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``, closed on exit.

    Parameters
    ----------
    address
        A scheduler address (``tcp://host:8786``), or ``local:N`` to start a local cluster of
        N single-threaded worker processes (closed on exit too).

    Raises
    ------
    ConfigError
        If ``local:N`` has no positive N.
    MissingDependencyError
        If ``distributed`` is not installed (``pip install 'qdanalysis[cluster]'``).
    """
    distributed = require("distributed", extra="cluster", purpose="embedding on a Dask cluster")
    if address.startswith("local:"):
        n = address.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(
                f"embedding cluster: expected 'local:N' with N >= 1 or a scheduler address; "
                f"got {address!r}."
            )
        with (
            distributed.LocalCluster(
                n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    with distributed.Client(address) as client:
        yield client
