"""Timing, result rows and machine description shared by the benchmark sections."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

RESULT_COLUMNS = (
    "section",
    "benchmark",
    "size",
    "baseline",
    "candidate",
    "baseline_s",
    "candidate_s",
    "ratio",
    "ratio_min",
    "ratio_max",
    "repeats",
    "goal",
    "met",
    "agreement",
    "memory",
    "note",
)


@dataclass
class Result:
    """One row of the results table: a ratio baseline time / candidate time (higher is better)."""

    section: str
    benchmark: str
    size: str
    baseline: str
    candidate: str
    baseline_s: float
    candidate_s: float
    ratio: float
    ratio_min: float
    ratio_max: float
    repeats: int
    goal: str = ""
    met: str = ""
    agreement: str = ""
    memory: str = ""
    note: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Paired:
    """Interleaved timings of a baseline and a candidate (seconds per repeat)."""

    base: list[float] = field(default_factory=list)
    cand: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [b / c for b, c in zip(self.base, self.cand, strict=True)]

    def result(self, **kw: Any) -> Result:
        r = self.ratios
        return Result(
            baseline_s=statistics.median(self.base),
            candidate_s=statistics.median(self.cand),
            ratio=statistics.median(r),
            ratio_min=min(r),
            ratio_max=max(r),
            repeats=len(r),
            **kw,
        )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` (garbage collected first) and its value."""
    gc.collect()
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def paired(
    base: Callable[[], Any], cand: Callable[[], Any], repeats: int, *, warmup: bool = True
) -> tuple[Paired, Any, Any]:
    """Time ``base`` and ``cand`` alternately ``repeats`` times (robust to a shared machine)."""
    if warmup:
        cand()
    p = Paired()
    b_out = c_out = None
    for _ in range(repeats):
        tb, b_out = timed(base)
        tc, c_out = timed(cand)
        p.base.append(tb)
        p.cand.append(tc)
    return p, b_out, c_out


def goal_met(value: float, threshold: float, *, higher: bool = True) -> str:
    ok = value >= threshold if higher else value < threshold
    return "yes" if ok else "no"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    keep = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
                    return " ".join(x for x in keep if x in flags)
    except OSError:
        pass
    return ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict[str, str]:
    """Machine, versions and date for the results header."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    info = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "git": _git_sha(),
        "cpu": _cpu_name(),
        "cpu flags": _cpu_flags(),
        "logical cores": str(os.cpu_count()),
        "memory": mem,
        "load average at start": load,
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }
    for dist in (
        "qdanalysis",
        "numpy",
        "scipy",
        "pandas",
        "torch",
        "sentence-transformers",
        "transformers",
        "vendi-score",
    ):
        info[dist] = _version(dist)
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy's config API varies across versions; informational only
        info["numpy blas"] = "unknown"
    return info


def fmt_s(x: float) -> str:
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} µs"
