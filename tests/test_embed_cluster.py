"""Embedding on a Dask cluster gives the single-process vectors (2-worker local cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from qdanalysis.analysis.embeddings import EmbeddingCache, SentenceTransformerEmbedder, embed_texts
from qdanalysis.errors import ConfigError, DataWarning

pytest.importorskip("distributed")

from qdanalysis.analysis.embed_cluster import DaskEmbedder, dask_client


@pytest.mark.slow
def test_local_dask_cluster_embeds_the_single_process_vectors(minilm, shipped_outputs, tmp_path):
    texts = sorted(set(shipped_outputs["output"]), key=len)[::97][:40]
    with dask_client("local:2") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        dask = DaskEmbedder(SentenceTransformerEmbedder(device="cpu"), client, min_texts_per_task=8)
        cache = EmbeddingCache(tmp_path / "e.sqlite")
        with pytest.warns(DataWarning, match="max_seq_length"):  # some texts are long
            emb = embed_texts(texts, dask, cache=cache, progress=False)
        cache.close()
    assert emb.model == minilm.name  # same vectors, same cache key
    assert emb.device.startswith("dask:2 workers")
    ref = minilm.encode(texts)
    np.testing.assert_allclose(emb.vectors[emb.rows_for(texts)], ref, rtol=1e-5, atol=1e-6)


def test_dask_client_address_is_checked():
    with pytest.raises(ConfigError, match="local:N"), dask_client("local:0"):
        pass
