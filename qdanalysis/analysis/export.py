"""Saving tables and figures with provenance sidecars, atomically.

Every artifact ``<stem>.<ext>`` gets a ``<stem>.json`` sidecar saying which data (file hashes),
parameters (embedding model, Vendi order, covariance type, seed, …), code version and library
versions made it, so a number in a paper can be traced back and rerun.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from .._hashing import file_sha256
from .._io import atomic_path, atomic_write
from ..errors import ConfigError

__all__ = ["Provenance", "library_versions", "save_figure", "save_table"]

_LIBS = (
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "matplotlib",
    "seaborn",
    "torch",
    "sentence-transformers",
    "transformers",
)


def library_versions(names: Sequence[str] = _LIBS) -> dict[str, str | None]:
    """Installed versions of the libraries that shape results (None when absent)."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def _git_state(cwd: Path) -> dict[str, Any]:
    """The commit of the code and whether tracked files differ from it (None outside git)."""
    try:
        sha = _git(cwd, "rev-parse", "HEAD")
        dirty = bool(_git(cwd, "status", "--porcelain", "--untracked-files=no"))
        return {"git_sha": sha, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def _display_path(p: Path) -> str:
    """A path relative to the working directory when inside it, else only the file name."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return p.name


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What produced an artifact. ``parameters`` holds every scientific choice."""

    inputs: Sequence[str | Path] = ()
    """Input files; each is recorded with its SHA-256 (and a path relative to the cwd)."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """Embedding model and weights hash, device, truncation rate, vendi_q, tol, aggregator,
    ddof, cov_type, seeds, …"""
    argv: Sequence[str] | None = None
    """The command line, when a CLI made it."""

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's content (computed now: hashes, versions, git state, UTC time)."""
        from .. import __version__

        inputs = []
        for p in self.inputs:
            path = Path(p)
            inputs.append(
                {
                    "path": _display_path(path),
                    "sha256": file_sha256(path) if path.is_file() else None,
                }
            )
        return {
            "qdanalysis_version": __version__,
            **_git_state(Path(__file__).resolve().parent),
            "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "argv": list(self.argv) if self.argv is not None else None,
            "inputs": inputs,
            "parameters": dict(self.parameters),
            "python": platform.python_version(),
            "libraries": library_versions(),
        }


def _write_sidecar(path: Path, provenance: Provenance, artifacts: Sequence[Path]) -> Path:
    side = path.with_suffix(".json")
    data = provenance.to_dict()
    data["artifacts"] = [a.name for a in artifacts]
    with atomic_write(side, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    return side


def save_table(
    df: pd.DataFrame,
    stem: str,
    *,
    out_dir: str | Path = "figures",
    formats: Sequence[str] = ("csv",),
    provenance: Provenance,
    float_format: str | None = None,
) -> list[Path]:
    """Write ``df`` as ``<out_dir>/<stem>.<fmt>`` for each format, plus ``<stem>.json``.

    Formats: ``csv``, ``md`` (Markdown), ``tex`` (LaTeX booktabs), ``parquet`` (column types
    kept, no index). Each file is written to a temporary name and renamed, so no reader sees a
    partial table.

    Returns
    -------
    list of pathlib.Path
        The files written, sidecar last.
    """
    out = Path(out_dir)
    written = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        if fmt == "csv":
            with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
                df.to_csv(fh, index=False, float_format=float_format, lineterminator="\n")
        elif fmt == "md":
            with atomic_write(path, "w", encoding="utf-8") as fh:
                fh.write(_markdown(df))
        elif fmt == "tex":
            with atomic_write(path, "w", encoding="utf-8") as fh:
                fh.write(_latex_booktabs(df))
        elif fmt == "parquet":
            with atomic_path(path) as tmp:
                df.to_parquet(tmp, index=False)
        else:
            raise ConfigError(
                f"save_table format: expected 'csv', 'md', 'tex' or 'parquet'; got {fmt!r}."
            )
        written.append(path)
    written.append(_write_sidecar(out / f"{stem}.json", provenance, written))
    return written


def _fmt_cell(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    num = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if n else ":---" for n in num) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(x: Any) -> str:
    s = str(x)
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
    ):
        s = s.replace(a, b)
    return s


def _latex_booktabs(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in cols)
    lines = [
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(_latex_escape(c) for c in cols) + " \\\\",
        "\\midrule",
    ]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append(_latex_escape(v))
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def save_figure(
    fig: Any,
    stem: str,
    *,
    out_dir: str | Path = "figures",
    formats: Sequence[str] = ("pdf", "png"),
    provenance: Provenance,
    dpi: int = 300,
) -> list[Path]:
    """Save a matplotlib figure as ``<stem>.<fmt>`` for each format, plus ``<stem>.json``.

    PDFs are vector with embedded TrueType fonts and no creation date (so reruns are
    byte-stable); each file is written atomically.
    """
    out = Path(out_dir)
    written = []
    for fmt in formats:
        if fmt not in ("pdf", "png", "svg"):
            raise ConfigError(f"save_figure format: expected 'pdf', 'png' or 'svg'; got {fmt!r}.")
        path = out / f"{stem}.{fmt}"
        meta: dict[str, Any] = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt, {})
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
        written.append(path)
    written.append(_write_sidecar(out / f"{stem}.json", provenance, written))
    return written
