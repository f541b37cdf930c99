"""Backend choice (dtype="auto"), chunk-and-pool for long texts, multi-process embedding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from qdanalysis._hashing import text_sha256
from qdanalysis.analysis.embeddings import (
    AGREEMENT_MIN_COSINE,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    embed_texts,
)
from qdanalysis.analysis.pipeline import AnalysisSpec
from qdanalysis.errors import ConfigError, DataWarning

SHORT = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]


@pytest.fixture(scope="module")
def chunker():
    return SentenceTransformerEmbedder(device="cpu", long_texts="chunk")


@pytest.fixture(scope="module")
def long_texts(shipped_outputs, chunker):
    """Real shipped outputs longer than MiniLM's 256 tokens, plus two made-up ones."""
    texts = sorted(set(shipped_outputs["output"]), key=len)[-400:]
    counts = chunker.token_counts(texts)
    real = [t for t, c in zip(texts, counts, strict=True) if c > 300][:3]
    assert len(real) == 3
    return [*real, "Let x_1 = 3.25; " * 90 + "so x = 42.", " ".join(["word"] * 700)]


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_chunk_and_pool_leaves_short_texts_exactly_unchanged(minilm, chunker, long_texts):
    mixed = [SHORT[0], long_texts[0], SHORT[1], long_texts[1], SHORT[2]]
    got = chunker.encode(mixed)
    np.testing.assert_array_equal(got[[0, 2, 4]], minilm.encode(SHORT))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # The long ones are not their truncated vectors (their tails now count).
    cut = minilm.encode(long_texts[:2])
    assert np.all(np.sum(got[[1, 3]] * cut, axis=1) < 0.9999)


def test_chunks_cover_every_token_of_long_texts(chunker, long_texts):
    tok = chunker._model.tokenizer
    for text in long_texts:
        parts = chunker.chunks(text)
        assert len(parts) >= 2
        # Every token of the text, in order, is in exactly one chunk, and each chunk fits.
        assert [i for p in parts for i in _ids(tok, p)] == _ids(tok, text)
        assert chunker.token_counts(parts).max() <= chunker.max_seq_length
    assert chunker.chunks(SHORT[0]) == [SHORT[0]]


def test_pooled_vector_is_the_token_weighted_mean_of_chunk_vectors(minilm, chunker, long_texts):
    text = long_texts[0]
    parts = chunker.chunks(text)
    w = chunker.token_counts(parts).astype(float)
    mean = w @ minilm.encode(parts).astype(float)
    np.testing.assert_allclose(chunker.encode([text])[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_chunk_mode_embeds_whole_and_reports_no_truncation(minilm, chunker, long_texts, tmp_path):
    assert minilm.name.count("+") == 0  # float32 cache keys are those of earlier versions
    assert chunker.name == minilm.name + "+chunk"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        emb = embed_texts([*SHORT, long_texts[0]], chunker, progress=False)
    assert (emb.n_truncated, emb.extra["n_long"], emb.extra["long_texts"]) == (0, 1, "chunk")
    with pytest.warns(DataWarning, match="long_texts='chunk' embeds them whole"):
        cut = embed_texts([*SHORT, long_texts[0]], minilm, progress=False)
    assert (cut.n_truncated, cut.extra["n_long"]) == (1, 1)


def test_chunk_mode_reuses_cached_vectors_of_texts_that_fit(minilm, long_texts, tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    with pytest.warns(DataWarning):
        first = embed_texts([*SHORT, long_texts[0]], minilm, cache=cache, progress=False)
    chunker = SentenceTransformerEmbedder(device="cpu", long_texts="chunk")
    seen: list[str] = []
    plain = chunker._encode_plain
    chunker._encode_plain = lambda texts: (seen.extend(texts), plain(texts))[1]
    emb = embed_texts([*SHORT, long_texts[0]], chunker, cache=cache, progress=False)
    cache.close()
    assert (emb.n_cached, emb.n_embedded) == (3, 1)
    assert not set(SHORT) & set(seen)  # only the long text's chunks were embedded
    np.testing.assert_array_equal(emb.vectors[emb.rows_for(SHORT)], first.vectors[:3])


def test_auto_measures_backends_and_records_the_choice(minilm, shipped_outputs):
    texts = sorted(set(shipped_outputs["output"]))[:24]
    auto = SentenceTransformerEmbedder(device="cpu", dtype="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        emb = embed_texts(texts, auto, progress=False)
    choice = emb.extra["backend_choice"]
    assert choice["requested"] == "auto"
    assert {"float32", "bfloat16"} <= set(choice["texts_per_s"])
    assert choice["min_cosine_vs_float32"]["float32"] == pytest.approx(1.0, abs=1e-6)
    assert choice["chosen"] == auto.dtype
    assert choice["min_cosine_vs_float32"][auto.dtype] >= AGREEMENT_MIN_COSINE
    fastest_ok = max(
        (d for d, c in choice["min_cosine_vs_float32"].items() if c >= AGREEMENT_MIN_COSINE),
        key=choice["texts_per_s"].get,
    )
    assert auto.dtype == fastest_ok
    assert emb.model == auto.variant(auto.dtype).name
    assert emb.n_embedded == len(texts)  # the probe's vectors were kept, not counted as cached
    ref = minilm.encode(texts)
    assert np.min(np.sum(ref * emb.vectors[emb.rows_for(texts)], axis=1)) >= AGREEMENT_MIN_COSINE


def test_auto_choosing_float32_gives_the_explicit_float32_vectors_bit_for_bit(
    minilm, shipped_outputs, monkeypatch
):
    # The probe embeds its 64 texts in other batches (other padding): its float32 vectors must
    # not be kept, or a run where auto picks float32 would differ from earlier runs at 1e-7.
    texts = sorted(set(shipped_outputs["output"]), key=len)[:80]
    auto = SentenceTransformerEmbedder(device="cpu", dtype="auto")
    monkeypatch.setattr(auto, "candidate_dtypes", lambda: ["float32"])
    got = embed_texts(texts, auto, progress=False)
    assert (got.extra["backend_choice"]["chosen"], got.model) == ("float32", minilm.name)
    ref = embed_texts(texts, minilm, progress=False)
    assert got.vectors.tobytes() == ref.vectors.tobytes()


def test_auto_keeps_the_backend_the_cache_holds(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    cache.put_many(minilm.name, [text_sha256(SHORT[0])], minilm.encode(SHORT[:1]))
    auto = SentenceTransformerEmbedder(device="cpu", dtype="auto")
    emb = embed_texts(SHORT, auto, cache=cache, progress=False)
    cache.close()
    choice = emb.extra["backend_choice"]
    assert (choice["chosen"], auto.dtype, emb.model) == ("float32", "float32", minilm.name)
    assert choice["reason"].startswith("cache: 1 of 3")
    assert "texts_per_s" not in choice  # no probe ran
    np.testing.assert_array_equal(emb.vectors[emb.rows_for(SHORT)], minilm.encode(SHORT))


def test_explicit_backends_stay_and_bad_arguments_fail_fast():
    assert SentenceTransformerEmbedder(device="cpu", dtype="bfloat16").name.endswith("+bf16")
    for kwargs, match in (
        ({"dtype": "int8"}, "embedding dtype"),
        ({"long_texts": "cut"}, "long_texts"),
        ({"devices": ["cpu"]}, "two or more devices"),
        ({"devices": ["cpu", "tpu"]}, "device"),
    ):
        with pytest.raises(ConfigError, match=match):
            SentenceTransformerEmbedder(device="cpu", **kwargs)


def test_spec_embedding_options_round_trip():
    spec = AnalysisSpec(embedding_devices=["cpu", "cpu"], embedding_long_texts="chunk")
    assert spec.embedding_devices == ("cpu", "cpu")
    assert AnalysisSpec().embedding_dtype == "auto"
    assert AnalysisSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="embedding_long_texts"):
        AnalysisSpec(embedding_long_texts="whole")


def test_fit_cli_embedding_options():
    from qdanalysis.cli.fit import build_parser, build_spec

    args = build_parser().parse_args(
        ["--embedding-devices", "cpu,cpu", "--embedding-long-texts", "chunk"]
    )
    spec = build_spec(args)
    assert (spec.embedding_devices, spec.embedding_long_texts) == (("cpu", "cpu"), "chunk")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--embedding-devices", "cpu"])


@pytest.mark.slow
def test_multi_process_pool_gives_the_single_process_vectors(minilm, long_texts):
    texts = [*SHORT, *long_texts[:2]]
    pooled = SentenceTransformerEmbedder(device="cpu", devices=["cpu", "cpu"])
    try:
        got = pooled.encode(texts)
    finally:
        pooled.close()
    np.testing.assert_allclose(got, minilm.encode(texts), rtol=1e-5, atol=1e-6)
    assert pooled.device == "cpu,cpu"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::qdanalysis.errors.QDAnalysisWarning")  # not tested here
def test_analysis_records_the_auto_choice_and_reruns_on_it(outputs_small, tmp_path):
    from qdanalysis.analysis.pipeline import analyze

    spec = AnalysisSpec(max_configs=10, embedding_long_texts="chunk")
    first = analyze(outputs_small, spec, cache=tmp_path, progress=False)
    p = first.parameters
    choice = p["embedding_backend_choice"]
    assert (choice["requested"], p["embedding_dtype"]) == ("auto", choice["chosen"])
    assert set(choice["texts_per_s"]) >= {"float32", "bfloat16"}
    assert (p["embedding_long_texts"], p["n_truncated"]) == ("chunk", 0)
    again = analyze(outputs_small, spec, cache=tmp_path, progress=False)
    assert again.parameters["embedding_backend_choice"]["reason"].startswith("cache:")
    assert again.embeddings.n_embedded == 0
    assert again.qd_table.equals(first.qd_table)
