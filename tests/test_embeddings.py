from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdanalysis._hashing import text_sha256
from qdanalysis.analysis.embeddings import (
    CACHE_FILE,
    EmbeddingCache,
    Embeddings,
    default_cache_dir,
    embed_texts,
)
from qdanalysis.errors import DataError, DataWarning

QUICKSTART = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]


class Spy:
    """Wraps a real embedder and counts the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.max_seq_length = inner.max_seq_length
        self.encoded = 0

    def encode(self, texts):
        self.encoded += len(texts)
        return self.inner.encode(texts)

    def token_counts(self, texts):
        return self.inner.token_counts(texts)


def test_embedder_contract(minilm):
    v = minilm.encode(QUICKSTART)
    assert v.shape == (3, 384)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # The documented sentence-transformers quick-start cosines: genuine weights.
    sims = v @ v.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=2e-3)
    assert sims[0, 2] == pytest.approx(0.1046, abs=2e-3)
    assert sims[1, 2] == pytest.approx(0.1411, abs=2e-3)
    # Input order and determinism.
    np.testing.assert_array_equal(minilm.encode(QUICKSTART[::-1]), v[::-1])
    assert minilm.name.startswith("all-MiniLM-L6-v2@")
    assert minilm.max_seq_length == 256


def test_each_distinct_text_is_embedded_once_and_cached(minilm, tmp_path):
    spy = Spy(minilm)
    texts = QUICKSTART * 4
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    first = embed_texts(texts, spy, cache=cache, progress=False)
    assert spy.encoded == 3
    assert first.n_texts == 3
    assert first.n_embedded == 3
    cache.close()
    again = embed_texts(texts, spy, cache=EmbeddingCache(tmp_path / "e.sqlite"), progress=False)
    assert spy.encoded == 3
    assert again.n_cached == 3
    assert again.n_embedded == 0
    rows = again.rows_for(QUICKSTART)
    np.testing.assert_array_equal(again.vectors[rows], minilm.encode(QUICKSTART))


def test_rows_align_by_text_not_position(minilm):
    e = embed_texts(["b text", "a text"], minilm, progress=False)
    assert isinstance(e, Embeddings)
    np.testing.assert_array_equal(
        e.vectors[e.rows_for(["a text"])[0]], minilm.encode(["a text"])[0]
    )
    with pytest.raises(DataError, match="not embedded"):
        e.rows_for(["never seen"])


def test_truncation_is_counted_and_warned(minilm):
    long = " ".join(["word"] * 400)
    with pytest.warns(DataWarning, match="max_seq_length of 256"):
        e = embed_texts([long, "short"], minilm, progress=False)
    assert e.n_truncated == 1
    assert e.truncated_share == 0.5


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match="Delete the file"):
        EmbeddingCache(p)


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("QDANALYSIS_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path("data/cache")
    monkeypatch.setenv("QDANALYSIS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() / CACHE_FILE == tmp_path / "embeddings.sqlite"


def test_vectors_cached_without_token_counts_are_counted_again(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    cache.put_many(minilm.name, [text_sha256(QUICKSTART[0])], minilm.encode(QUICKSTART[:1]))
    spy = Spy(minilm)
    with pytest.warns(DataWarning, match="1 of 2 distinct texts"):
        emb = embed_texts(["x " * 400, QUICKSTART[0]], spy, cache=cache, progress=False)
    cache.close()
    assert (emb.n_cached, emb.n_embedded, spy.encoded) == (1, 1, 1)
    assert emb.n_truncated == 1
    assert emb.vectors.shape == (2, 384)
