"""Embedding stage: overhead vs raw SentenceTransformer.encode, dedupe, cache, bf16 path."""

from __future__ import annotations

import gzip
import json
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np

from qdanalysis.analysis.embeddings import EmbeddingCache, SentenceTransformerEmbedder, embed_texts

from ._common import Paired, Result, goal_met, paired, timed

SECTION = "embeddings"
DATA = Path(__file__).resolve().parent.parent / "data"


def real_texts(n: int, *, seed: int = 0) -> list[str]:
    """``n`` distinct proposer outputs drawn (seeded) from the shipped datasets."""
    texts: set[str] = set()
    for f in sorted(DATA.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.update(json.loads(line)["output"] for line in fh)
    pool = sorted(texts)
    random.Random(seed).shuffle(pool)
    return pool[:n]


def _quiet(fn):
    def inner():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation DataWarning: expected on long texts
            return fn()

    return inner


def run(*, quick: bool, repeats: int) -> list[Result]:
    n = 32 if quick else 128
    texts = real_texts(n)
    fp32 = SentenceTransformerEmbedder(device="cpu", batch_size=64)
    model = fp32._model  # load once, outside the timings
    results = []

    # 1. Toolkit stage (dedupe, hashing, length-sorted chunks, token counts) vs raw encode.
    def raw():
        return model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    p, ref, emb = paired(raw, _quiet(lambda: embed_texts(texts, fp32, progress=False)), repeats)
    ours = emb.vectors[emb.rows_for(texts)]
    cos = float(np.min(np.sum(ref * ours, axis=1)))
    r = p.result(
        section=SECTION,
        benchmark="embed stage throughput",
        size=f"{n} distinct real outputs, fp32, batch 64",
        baseline="SentenceTransformer.encode",
        candidate="qdanalysis embed_texts (no cache)",
        goal=">= 0.95x",
        agreement=f"min cosine {cos:.6f}",
        note=f"{n / p.cand[-1]:.1f} texts/s (toolkit)",
    )
    r.met = goal_met(r.ratio, 0.95)
    results.append(r)

    # 2. Cache: a second run over the same texts reads vectors instead of embedding them.
    cold = Paired()
    for _ in range(max(1, repeats - 1)):
        with tempfile.TemporaryDirectory() as tmp:
            cache = EmbeddingCache(Path(tmp) / "e.sqlite")
            tc, _ = timed(_quiet(lambda c=cache: embed_texts(texts, fp32, cache=c, progress=False)))
            tw, warm = timed(
                _quiet(lambda c=cache: embed_texts(texts, fp32, cache=c, progress=False))
            )
            cache.close()
        cold.base.append(tc)
        cold.cand.append(tw)
    r = cold.result(
        section=SECTION,
        benchmark="embedding cache",
        size=f"{n} distinct texts",
        baseline="embed_texts, empty cache",
        candidate="embed_texts, warm cache",
        goal=">= 20x",
        agreement="identical vectors" if warm.n_cached == n else f"{warm.n_cached}/{n} cached",
        note="model loaded in both",
    )
    r.met = goal_met(r.ratio, 20)
    results.append(r)

    # 3. Dedupe: slot fills of 300 configurations x 150 GSM8K questions vs distinct texts.
    from qdanalysis.configs import generate_configs
    from qdanalysis.outputs import add_proposer_column, load_outputs

    rows = add_proposer_column(load_outputs([DATA / "rereading_gsm8k.jsonl.gz"]), ["model"])
    cfgs = generate_configs(rows, n_proposers=6, max_configs=300, seed=0)
    n_questions = rows["question_id"].nunique()
    fills = len(cfgs) * n_questions * 6
    distinct = rows["output"].nunique()
    results.append(
        Result(
            section=SECTION,
            benchmark="dedupe (texts embedded once)",
            size=f"{len(cfgs)} configs x {n_questions} GSM8K questions x 6 slots",
            baseline=f"{fills:,} slot fills",
            candidate=f"{distinct:,} distinct texts embedded",
            baseline_s=float("nan"),
            candidate_s=float("nan"),
            ratio=fills / distinct,
            ratio_min=fills / distinct,
            ratio_max=fills / distinct,
            repeats=1,
            note="count ratio (encode calls saved), not a timing",
        )
    )

    # 4. bf16 on CPU (AVX512-BF16/AMX) vs fp32: throughput and per-text cosine.
    bf16 = SentenceTransformerEmbedder(device="cpu", batch_size=64, dtype="bfloat16")
    _ = bf16._model
    p, e32, e16 = paired(
        _quiet(lambda: embed_texts(texts, fp32, progress=False)),
        _quiet(lambda: embed_texts(texts, bf16, progress=False)),
        max(1, repeats - 1),  # the slower side on CPUs without native bf16
    )
    v32 = e32.vectors[e32.rows_for(texts)]
    v16 = e16.vectors[e16.rows_for(texts)]
    cosines = np.sum(v32 * v16, axis=1)
    r = p.result(
        section=SECTION,
        benchmark="bf16 CPU path",
        size=f"{n} distinct real outputs",
        baseline="fp32",
        candidate="bf16 (embedding_dtype='bfloat16')",
        goal=">= 1.8x at cosine >= 0.99",
        agreement=f"cosine min {cosines.min():.4f}, mean {cosines.mean():.5f}",
        note="opt-in; default stays fp32",
    )
    r.met = goal_met(r.ratio, 1.8) if cosines.min() >= 0.99 else "no (agreement)"
    results.append(r)
    return results
