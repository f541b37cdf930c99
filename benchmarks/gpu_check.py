"""GPU check: embedding and Vendi throughput on CUDA versus CPU, and agreement.

Run on a machine with a GPU: ``python -m benchmarks.gpu_check`` (about 3 minutes). Writes
``benchmarks/results/gpu.csv`` and ``gpu.md``; exits 0 with a note when CUDA is absent.

Checks: GPU embeddings equal CPU ones at ``rtol=1e-4`` (``atol=1e-5``, unit vectors); each
backend on CUDA (bfloat16) against CUDA float32 (throughput ratio, min cosine ≥ 0.999) and what
``dtype="auto"`` picks there; the long-text embedder (``long_texts="chunk"``) on CUDA against
the CPU one (``rtol=1e-4``) and its cost over truncation; batched Vendi on CUDA equals numpy to
``1e-9`` in float64 and ``1e-6`` in float32 (q = 1 and 2).

A GPU machine that cannot reach a registry or a model hub needs the weights carried: on the
development machine, ``python -m benchmarks.gpu_check --write-half-copy DIR`` saves a float16
copy of the default model (about 45 MB), and ``--model DIR`` there loads it (in float32).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._common import machine_info


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _best(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def _write_half_copy(model: str, out: Path) -> int:
    from qdanalysis.analysis.embeddings import SentenceTransformerEmbedder

    st = SentenceTransformerEmbedder(model, device="cpu")._model
    st.half().save(str(out), safe_serialization=True)
    # Stored in float16 (half the bytes to carry); loaded in float32 like the original.
    cfg = out / "config.json"
    conf = json.loads(cfg.read_text(encoding="utf-8"))
    for key in ("dtype", "torch_dtype"):
        if key in conf:
            conf[key] = "float32"
    cfg.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote a float16 copy of {model} to {out} ({size / 2**20:.1f} MiB)")
    return 0


def _backend_rows(gpu, texts) -> list[dict[str, object]]:
    """Each backend vs float32 on the embedder's device, and the auto choice there."""
    import torch

    from qdanalysis._hashing import text_sha256
    from qdanalysis.analysis.embeddings import AGREEMENT_MIN_COSINE

    def base():
        out = gpu.encode(texts)
        _sync(torch)
        return out

    t32, v_gpu_all = _best(base)
    rows: list[dict[str, object]] = []
    for dtype in gpu.candidate_dtypes()[1:]:
        other = gpu.variant(dtype)
        other.encode(texts[:16])

        def run(o=other):
            out = o.encode(texts)
            _sync(torch)
            return out

        t, vecs = _best(run)
        cos = np.sum(v_gpu_all * vecs, axis=1)
        rows.append(
            {
                "check": f"embeddings {dtype} vs float32 on {gpu.device}",
                "cpu": f"float32 {len(texts) / t32:.1f} texts/s ({gpu.device})",
                "gpu": f"{len(texts) / t:.1f} texts/s",
                "ratio": t32 / t,
                "agreement": f"min cosine {cos.min():.5f}, mean {cos.mean():.6f}",
                "pass": bool(cos.min() >= AGREEMENT_MIN_COSINE) or "too lossy: auto skips it",
            }
        )
    auto = gpu.variant("auto")
    choice = auto.choose_backend({text_sha256(x): x for x in texts[:256]})
    rows.append(
        {
            "check": f"auto backend choice on {gpu.device}",
            "cpu": "",
            "gpu": f"auto -> {choice['chosen']}",
            "ratio": choice["texts_per_s"][choice["chosen"]] / choice["texts_per_s"]["float32"],
            "agreement": f"probe min cosine {choice['min_cosine_vs_float32']}",
            "pass": True,
        }
    )
    return rows


def _long_text_rows(model, texts, device) -> list[dict[str, object]]:
    """The long-text embedder (chunk-and-pool) on ``device``: vs CPU, and vs truncation."""
    import torch

    from qdanalysis.analysis.embeddings import SentenceTransformerEmbedder

    cpu = SentenceTransformerEmbedder(model, device="cpu", long_texts="chunk")
    gpu = SentenceTransformerEmbedder(model, device=device, batch_size=128, long_texts="chunk")
    cut = SentenceTransformerEmbedder(model, device=device, batch_size=128)
    long = [
        t for t, n in zip(texts, cut.token_counts(texts), strict=True) if n > cut.max_seq_length
    ]
    if not long:
        return []
    gpu.encode(long[:4])
    cut.encode(long[:4])

    def on(e):
        out = e.encode(long)
        _sync(torch)
        return out

    t_chunk, v_chunk = _best(lambda: on(gpu))
    t_cut, _ = _best(lambda: on(cut))
    few = long[: min(len(long), 32)]
    v_cpu = cpu.encode(few)
    ok = bool(np.allclose(v_chunk[: len(few)], v_cpu, rtol=1e-4, atol=1e-5))
    return [
        {
            "check": f"long-text embedder (chunk-and-pool), {len(long)} long texts",
            "cpu": f"truncating {len(long) / t_cut:.1f} texts/s ({device})",
            "gpu": f"{len(long) / t_chunk:.1f} texts/s",
            "ratio": t_cut / t_chunk,
            "agreement": f"{device} vs CPU on {len(few)}: max |diff| "
            f"{np.abs(v_chunk[: len(few)] - v_cpu).max():.2e}",
            "pass": ok,
        }
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    p.add_argument("--n-texts", type=int, default=2_000, help="texts embedded on the GPU")
    p.add_argument("--n-cpu-texts", type=int, default=128, help="texts embedded on the CPU")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="embedding model (or a copy's dir)")
    p.add_argument(
        "--write-half-copy",
        type=Path,
        default=None,
        metavar="DIR",
        help="save a float16 copy of --model to DIR (to carry to a GPU machine) and exit",
    )
    args = p.parse_args(argv)
    if args.write_half_copy is not None:
        return _write_half_copy(args.model, args.write_half_copy)
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to check.")
        return 0
    if not torch.cuda.is_available():
        print("CUDA is not available: GPU check skipped (nothing written).")
        return 0
    from qdanalysis.analysis.diversity import _vendi_score_torch, vendi_backend, vendi_score
    from qdanalysis.analysis.embeddings import SentenceTransformerEmbedder, embed_texts

    from .bench_embeddings import real_texts
    from .bench_vendi import random_grams

    rows: list[dict[str, object]] = []
    gpu_name = torch.cuda.get_device_name(0)

    # Embeddings: throughput (texts/s) and agreement on the texts both devices embed.
    texts = real_texts(args.n_texts)
    sub = texts[: args.n_cpu_texts]
    cpu = SentenceTransformerEmbedder(args.model, device="cpu")
    gpu = SentenceTransformerEmbedder(args.model, device="cuda", batch_size=128)
    _ = cpu._model, gpu._model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embed_texts(sub[:16], gpu, progress=False)  # warm up CUDA kernels
        t_cpu, e_cpu = _best(lambda: embed_texts(sub, cpu, progress=False), repeats=1)

        def on_gpu():
            out = embed_texts(texts, gpu, progress=False)
            _sync(torch)
            return out

        t_gpu, e_gpu = _best(on_gpu, repeats=3)
    v_cpu = e_cpu.vectors[e_cpu.rows_for(sub)]
    v_gpu = e_gpu.vectors[e_gpu.rows_for(sub)]
    ok = bool(np.allclose(v_gpu, v_cpu, rtol=1e-4, atol=1e-5))
    rows.append(
        {
            "check": "embeddings fp32 (MiniLM)",
            "cpu": f"{len(sub) / t_cpu:.1f} texts/s",
            "gpu": f"{len(texts) / t_gpu:.1f} texts/s",
            "ratio": (len(texts) / t_gpu) / (len(sub) / t_cpu),
            "agreement": f"max |diff| {np.abs(v_gpu - v_cpu).max():.2e}, "
            f"min cosine {np.sum(v_gpu * v_cpu, axis=1).min():.6f}",
            "pass": ok,
        }
    )

    rows += _backend_rows(gpu, texts)
    rows += _long_text_rows(args.model, texts, "cuda")

    # Vendi: the CPU path (numba Jacobi or numpy eigvalsh, per vendi_backend) vs the torch
    # path on CUDA, float64 and float32, at q = 1, 2 (closed form) and inf.
    cpu_backend = vendi_backend()
    for n, n_groups in ((6, 100_000), (48, 10_000)):
        K = random_grams(n_groups, n, seed=n)
        for q in (1.0, 2.0, float("inf")):
            t_np, ref = _best(lambda K=K, q=q: vendi_score(K, q=q))
            for dtype, tol in (("float64", 1e-9), ("float32", 1e-6)):

                def on_cuda(K=K, q=q, dtype=dtype):
                    out = _vendi_score_torch(K, q, 1e-10, device="cuda", dtype=dtype)
                    _sync(torch)
                    return out

                on_cuda()
                t_cu, ours = _best(on_cuda)
                diff = float(np.max(np.abs(np.asarray(ours) - ref)))
                rows.append(
                    {
                        "check": f"vendi q={q:g}, {n_groups:,} groups of {n}, {dtype} "
                        f"(CPU: {cpu_backend})",
                        "cpu": f"{t_np * 1e3:.1f} ms",
                        "gpu": f"{t_cu * 1e3:.1f} ms (incl. host transfer)",
                        "ratio": t_np / t_cu,
                        "agreement": f"max |diff| {diff:.1e} (limit {tol:g})",
                        "pass": diff <= tol,
                    }
                )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with (args.out_dir / "gpu.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = machine_info()
    info["gpu"] = gpu_name
    lines = ["# GPU check", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += ["", "| check | CPU | GPU | GPU/CPU | agreement | pass |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['check']} | {r['cpu']} | {r['gpu']} | {r['ratio']:.1f}× | {r['agreement']} "
        f"| {r['pass'] if isinstance(r['pass'], str) else ('yes' if r['pass'] else 'NO')} |"
        for r in rows
    ]
    (args.out_dir / "gpu.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if all(r["pass"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
