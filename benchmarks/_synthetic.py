"""Synthetic proposer outputs, configurations and embeddings for scale benchmarks.

Each question has ``n_models * n_samples`` outputs whose vectors are a question direction plus
noise (unit norm, 384-d like MiniLM); texts are unique strings, so no model is needed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qdanalysis._hashing import text_sha256
from qdanalysis.analysis.embeddings import Embeddings
from qdanalysis.configs import generate_configs


def synthetic_study(
    *,
    n_questions: int,
    n_configs: int,
    n_proposers: int = 6,
    n_models: int = 3,
    n_samples: int = 4,
    d: int = 384,
    seed: int = 0,
) -> tuple[pd.DataFrame, list, Embeddings]:
    rng = np.random.default_rng(seed)
    models = [f"model-{chr(97 + i)}" for i in range(n_models)]
    q = np.repeat(np.arange(n_questions), n_models * n_samples)
    m = np.tile(np.repeat(np.arange(n_models), n_samples), n_questions)
    s = np.tile(np.arange(n_samples), n_questions * n_models)
    texts = [f"q{a} {models[b]} s{c}" for a, b, c in zip(q, m, s, strict=True)]
    correct = (rng.random(len(q)) < 0.6).astype(float)
    frame = pd.DataFrame(
        {
            "dataset": "synthetic",
            "question_id": [f"q{a:05d}" for a in q],
            "model": [models[b] for b in m],
            "proposer": [models[b] for b in m],
            "sample_index": s,
            "output": texts,
            "correct": correct,
            "answer_key": np.where(correct > 0, "right", rng.integers(0, 3, len(q)).astype(str)),
        }
    )
    # float32 throughout: at 10⁴ questions the vectors alone are hundreds of MB.
    f32 = np.float32
    vec = np.repeat(rng.standard_normal((n_questions, d), dtype=f32), n_models * n_samples, axis=0)
    vec += rng.uniform(0.5, 1.5, (len(q), 1)).astype(f32) * rng.standard_normal(
        (len(q), d), dtype=f32
    )
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    emb = cached_embeddings(texts, vec)
    configs = generate_configs(frame, n_proposers=n_proposers, max_configs=n_configs, seed=seed)
    return frame, configs, emb


def cached_embeddings(
    texts: list[str], vectors: np.ndarray, model: str = "synthetic"
) -> Embeddings:
    """:class:`Embeddings` holding ``vectors[i]`` for the distinct text ``texts[i]``."""
    return Embeddings(
        vectors=np.asarray(vectors, dtype=np.float32),
        index={text_sha256(t): i for i, t in enumerate(texts)},
        model=model,
        max_seq_length=None,
        n_truncated=0,
        n_embedded=0,
        n_cached=len(texts),
    )
