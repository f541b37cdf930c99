"""GPU check: embedding and Vendi throughput on CUDA versus CPU, and agreement.

Run on a machine with a GPU: ``python -m benchmarks.gpu_check`` (about 3 minutes). Writes
``benchmarks/results/gpu.csv`` and ``gpu.md``; exits 0 with a note when CUDA is absent.

Checks: GPU embeddings equal CPU ones at ``rtol=1e-4`` (``atol=1e-5``, unit vectors); batched
Vendi on CUDA equals numpy to ``1e-9`` in float64 and ``1e-6`` in float32 (q = 1 and 2).
"""

from __future__ import annotations

import argparse
import csv
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    p.add_argument("--n-texts", type=int, default=2_000, help="texts embedded on the GPU")
    p.add_argument("--n-cpu-texts", type=int, default=128, help="texts embedded on the CPU")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
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
    cpu = SentenceTransformerEmbedder(device="cpu")
    gpu = SentenceTransformerEmbedder(device="cuda", batch_size=128)
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
        f"| {'yes' if r['pass'] else 'NO'} |"
        for r in rows
    ]
    (args.out_dir / "gpu.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
