"""Embedding stage: overhead vs raw encode, dedupe, cache, backends and auto, chunk-and-pool,
two processes (multi-process pool, Dask local cluster)."""

from __future__ import annotations

import gzip
import json
import os
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np

from qdanalysis._hashing import text_sha256
from qdanalysis.analysis.embeddings import (
    AGREEMENT_MIN_COSINE,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    embed_texts,
)

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

    results += backends(texts, fp32, repeats)
    results.append(chunk_and_pool(texts, fp32, repeats))
    if not quick:  # process start-up (torch import per worker) dwarfs a quick run
        results += parallel(real_texts(256), fp32)
    return results


def backends(texts: list[str], fp32: SentenceTransformerEmbedder, repeats: int) -> list[Result]:
    """4. Each backend vs torch float32 (ratio, min cosine), and what ``dtype="auto"`` picks."""
    out = []
    base = _quiet(lambda: fp32.encode(texts))
    for dtype in fp32.candidate_dtypes()[1:]:
        other = fp32.variant(dtype)
        other.encode(texts[:4])  # load and warm up outside the timings
        p, v32, vb = paired(base, _quiet(lambda o=other: o.encode(texts)), max(1, repeats - 1))
        cos = np.sum(v32 * vb, axis=1)
        ok = cos.min() >= AGREEMENT_MIN_COSINE
        r = p.result(
            section=SECTION,
            benchmark=f"backend {dtype}",
            size=f"{len(texts)} distinct real outputs, batch 64",
            baseline="torch float32",
            candidate=f"embedding_dtype={dtype!r}",
            goal=f"faster at min cosine >= {AGREEMENT_MIN_COSINE}",
            agreement=f"cosine min {cos.min():.5f}, mean {cos.mean():.6f}",
            note="kept by auto" if ok else "too lossy for auto",
        )
        r.met = ("yes" if r.ratio > 1 else "no") if ok else "no (agreement)"
        out.append(r)
    auto = SentenceTransformerEmbedder(device="cpu", batch_size=64, dtype="auto")
    t, choice = timed(lambda: auto.choose_backend({text_sha256(x): x for x in texts}))
    speeds = ", ".join(f"{d} {v:.1f}" for d, v in choice["texts_per_s"].items())
    out.append(
        Result(
            section=SECTION,
            benchmark="auto backend choice",
            size=f"probe of {choice['probe_texts']} texts",
            baseline="float32",
            candidate=f"auto -> {choice['chosen']}",
            baseline_s=float("nan"),
            candidate_s=t,
            ratio=choice["texts_per_s"][choice["chosen"]] / choice["texts_per_s"]["float32"],
            ratio_min=float("nan"),
            ratio_max=float("nan"),
            repeats=1,
            agreement="min cosine "
            + ", ".join(f"{d} {c:.5f}" for d, c in choice["min_cosine_vs_float32"].items()),
            note=f"probe texts/s: {speeds}; probe cost {t:.1f} s (loads, warm-ups, both runs)",
        )
    )
    return out


def chunk_and_pool(texts: list[str], fp32: SentenceTransformerEmbedder, repeats: int) -> Result:
    """5. long_texts='chunk' (every token embedded) vs the model's truncation, same texts."""
    chunk = fp32.variant("float32")
    chunk.long_texts = "chunk"
    chunk._st_model = fp32._model  # same weights; only the long-text handling differs
    n_long = int(np.sum(fp32.token_counts(texts) > (fp32.max_seq_length or 0)))
    p, cut, whole = paired(
        _quiet(lambda: fp32.encode(texts)),
        _quiet(lambda: chunk.encode(texts)),
        max(1, repeats - 1),
    )
    cos = np.sum(cut * whole, axis=1)
    return p.result(
        section=SECTION,
        benchmark="chunk-and-pool cost",
        size=f"{len(texts)} real outputs, {n_long} longer than {fp32.max_seq_length} tokens",
        baseline="truncate (model default)",
        candidate="long_texts='chunk'",
        goal="cost of embedding every token",
        agreement=f"cosine to truncated: min {cos.min():.4f}, mean {cos.mean():.5f}",
        note="ratio < 1: chunking embeds the cut tails too",
    )


def parallel(texts: list[str], fp32: SentenceTransformerEmbedder) -> list[Result]:
    """6. Two processes on this machine: sentence-transformers' pool and a Dask local cluster."""
    out = []
    t1, ref = timed(_quiet(lambda: fp32.encode(texts)))
    size = f"{len(texts)} real outputs, 2 workers x 1 thread"
    pool = fp32.variant("float32")
    pool.devices = ("cpu", "cpu")
    t_start, _ = timed(lambda: pool.encode(texts[:2]))  # spawn + load in each process
    t2, vp = timed(_quiet(lambda: pool.encode(texts)))
    pool.close()
    out.append(
        Result(
            section=SECTION,
            benchmark="multi-process pool (cpu,cpu)",
            size=size,
            baseline="one process",
            candidate="embedding_devices=('cpu','cpu')",
            baseline_s=t1,
            candidate_s=t2,
            ratio=t1 / t2,
            ratio_min=t1 / t2,
            ratio_max=t1 / t2,
            repeats=1,
            agreement=f"max |diff| {np.abs(vp - ref).max():.1e}",
            note=f"pool start {t_start:.1f} s not timed; {os.cpu_count()} CPUs",
        )
    )
    try:
        from qdanalysis.analysis.embed_cluster import DaskEmbedder, dask_client
    except ImportError:
        return out
    with dask_client("local:2") as client:
        dask = DaskEmbedder(fp32, client)
        t_start, _ = timed(lambda: dask.encode(texts[:32]))  # workers load the model
        t2, vd = timed(_quiet(lambda: dask.encode(texts)))
    out.append(
        Result(
            section=SECTION,
            benchmark="Dask local cluster",
            size=size,
            baseline="one process",
            candidate="embedding_cluster='local:2' (DaskEmbedder)",
            baseline_s=t1,
            candidate_s=t2,
            ratio=t1 / t2,
            ratio_min=t1 / t2,
            ratio_max=t1 / t2,
            repeats=1,
            agreement=f"max |diff| {np.abs(vd - ref).max():.1e}",
            note=f"cluster start + model load {t_start:.1f} s not timed; {os.cpu_count()} CPUs",
        )
    )
    return out


def sensitivity(out_dir: Path, *, cache_dir: Path) -> None:
    """Diversity and β on the shipped data: truncation (the default) vs chunk-and-pool (and
    bfloat16 when ``cache_dir`` holds its vectors), as sensitivity-table rows; and the share
    of texts each choice cuts, per dataset. Writes ``embedding_sensitivity*.csv`` and ``.md``.
    """
    import pandas as pd

    from qdanalysis.analysis.pipeline import AnalysisSpec, analyze
    from qdanalysis.analysis.sensitivity import (
        embedding_measures,
        sensitivity_table,
        truncation_by_dataset,
    )
    from qdanalysis.outputs import expand_output_paths, load_outputs

    outputs = load_outputs(expand_output_paths([DATA]))
    spec = AnalysisSpec(embedding_dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyze(outputs, spec, cache=cache_dir, progress=False)
        fp32 = SentenceTransformerEmbedder(device="cpu")
        chunk = SentenceTransformerEmbedder(device="cpu", long_texts="chunk")
        variants: dict[str, object] = {"chunk-and-pool": chunk}
        cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
        bf16 = fp32.variant("bfloat16")
        hashes = [text_sha256(t) for t in set(outputs["output"])]
        if len(cache.get_many(bf16.name, hashes)) == len(hashes):
            variants["bfloat16"] = bf16
        tables = embedding_measures(res, outputs, variants, cache=cache, pooled=False)
        cache.close()
        sens = sensitivity_table(tables, spec=res.spec)
    trunc = truncation_by_dataset(outputs, {"MiniLM truncate": fp32, "MiniLM chunk": chunk})
    rows = []
    for label, tab in tables.items():
        for ds, g in tab.groupby("dataset"):
            paper = sens[
                (sens["dataset"] == ds)
                & (sens["embedding"] == label)
                & (sens["quality_measure"] == "quality_mean")
                & (sens["diversity_measure"] == "diversity_vendi_q1")
            ].iloc[0]
            rows.append(
                {
                    "dataset": ds,
                    "embedding": label,
                    "mean_vendi_q1": g["diversity_vendi_q1"].mean(),
                    "alpha": paper["alpha"],
                    "beta": paper["beta"],
                    "beta_se": paper["beta_se"],
                    "r2": paper["r2"],
                }
            )
    summary = pd.DataFrame(rows)
    base = summary[summary["embedding"] == "default"].set_index("dataset")
    summary["d_mean_vendi_q1"] = summary["mean_vendi_q1"] - summary["dataset"].map(
        base["mean_vendi_q1"]
    )
    summary["d_beta"] = summary["beta"] - summary["dataset"].map(base["beta"])
    out_dir.mkdir(parents=True, exist_ok=True)
    sens.to_csv(out_dir / "embedding_sensitivity_table.csv", index=False)
    summary.to_csv(out_dir / "embedding_sensitivity.csv", index=False)
    trunc.to_csv(out_dir / "embedding_truncation.csv", index=False)
    md = ["# Embedding sensitivity (shipped data; Vendi q=1, quality_mean)", ""]
    md += [summary.to_markdown(index=False, floatfmt=".5f"), "", "## Truncated share", ""]
    md += [trunc.to_markdown(index=False, floatfmt=".4f")]
    (out_dir / "embedding_sensitivity.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_embeddings")
    p.add_argument("--sensitivity", action="store_true", help="write the sensitivity rows")
    p.add_argument("--cache-dir", type=Path, default=DATA / "cache")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    a = p.parse_args()
    if a.sensitivity:
        sensitivity(a.out_dir, cache_dir=a.cache_dir)
