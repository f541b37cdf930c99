"""``import qdanalysis`` is cheap: no torch, well under half a second."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from ._common import Result

SECTION = "import"
ROOT = Path(__file__).resolve().parent.parent


def _wall(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t


def _importtime() -> tuple[float, list[str]]:
    """Cumulative µs of ``qdanalysis`` from ``-X importtime`` and the heavy modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import qdanalysis"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    cum = 0.0
    heavy = []
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        name = parts[2]
        if name == "qdanalysis":
            cum = int(parts[1]) / 1e6
        if name.strip() in ("torch", "transformers", "sentence_transformers", "openai", "vllm"):
            heavy.append(name.strip())
    return cum, heavy


def run(*, quick: bool, repeats: int) -> list[Result]:
    base = []
    cand = []
    for _ in range(max(3, repeats)):
        base.append(_wall("pass"))
        cand.append(_wall("import qdanalysis"))
    cum, heavy = _importtime()
    imp = statistics.median(c - b for b, c in zip(base, cand, strict=True))
    return [
        Result(
            section=SECTION,
            benchmark="import qdanalysis",
            size="fresh interpreter",
            baseline="python -c pass",
            candidate="python -c 'import qdanalysis'",
            baseline_s=statistics.median(base),
            candidate_s=statistics.median(cand),
            ratio=float("nan"),
            ratio_min=float("nan"),
            ratio_max=float("nan"),
            repeats=len(base),
            goal="< 0.5 s, no torch",
            met="yes" if imp < 0.5 and not heavy else "no",
            agreement="heavy modules: " + (", ".join(heavy) if heavy else "none"),
            note=f"import cost {imp:.3f} s (wall difference); -X importtime {cum:.3f} s",
        )
    ]
