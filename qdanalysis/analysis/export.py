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

import numpy as np
import pandas as pd

from .._hashing import file_sha256
from .._io import atomic_path, atomic_write
from ..errors import ConfigError

__all__ = [
    "LATEX_ESCAPES",
    "Provenance",
    "format_number",
    "latex_coefficient_table",
    "latex_escape",
    "library_versions",
    "save_figure",
    "save_table",
    "save_text",
]

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


def save_text(
    text: str,
    stem: str,
    *,
    ext: str,
    out_dir: str | Path = "figures",
    provenance: Provenance,
) -> list[Path]:
    """Write ``text`` as ``<out_dir>/<stem>.<ext>`` (atomically) plus its ``<stem>.json`` sidecar.

    Returns
    -------
    list of pathlib.Path
        The file and its sidecar.
    """
    path = Path(out_dir) / f"{stem}.{ext}"
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return [path, _write_sidecar(path, provenance, [path])]


#: Characters LaTeX treats specially (and a few non-ASCII ones pdflatex cannot typeset) ->
#: their escaped text; applied in one pass, so an escape is never escaped again.
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "−": "-",
    "×": r"$\times$",
    "²": r"$^2$",
}


def latex_escape(x: Any) -> str:
    r"""``str(x)`` with every LaTeX special character escaped (see :data:`LATEX_ESCAPES`).

    Examples
    --------
    >>> print(latex_escape("a_b & 50% ~ {x} ^ \\"))
    a\_b \& 50\% \textasciitilde{} \{x\} \textasciicircum{} \textbackslash{}
    """
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in str(x))


def format_number(v: Any, *, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (never ``0.000`` for a small one); other
    values as ``str``.

    Examples
    --------
    >>> format_number(36.744973), format_number(-0.0219059), format_number(7.99e-112)
    ('36.74', '-0.02191', '7.99e-112')
    """
    if isinstance(v, bool | np.bool_) or not isinstance(v, float | np.floating):
        return str(v)
    return f"{float(v):.{digits}g}"


def _cells(df: pd.DataFrame) -> list[list[str]]:
    """Each row's cells as text: p-values (a ``p_value`` column) as
    :func:`~qdanalysis.analysis.regression.format_p` (``< 1/B`` where ``p_floor``), other
    numbers with four significant digits."""
    from .regression import format_p

    floors = df["p_floor"].to_numpy() if "p_floor" in df.columns else None
    out = []
    for i, row in enumerate(df.itertuples(index=False)):
        cells = []
        for col, v in zip(df.columns, row, strict=True):
            if col == "p_value" and isinstance(v, float | np.floating):
                cells.append(
                    format_p(float(v), floor=bool(floors[i]) if floors is not None else False)
                )
            else:
                cells.append(format_number(v))
        out.append(cells)
    return out


def _markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    num = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if n else ":---" for n in num) + "|",
    ]
    for cells in _cells(df):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _latex_booktabs(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in cols)
    lines = [
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in cols) + " \\\\",
        "\\midrule",
    ]
    for cells in _cells(df):
        lines.append(" & ".join(latex_escape(c) for c in cells) + " \\\\")
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


def _ci_cell(est: float, lo: float, hi: float, digits: int) -> str:
    """``est [lo, hi]`` with ``digits`` significant digits, minus signs as LaTeX math."""
    text = f"{format_number(est, digits=digits)} [{format_number(lo, digits=digits)}, "
    text += f"{format_number(hi, digits=digits)}]"
    return text.replace("-", "$-$")


def latex_coefficient_table(
    coefs: pd.DataFrame,
    *,
    caption: str,
    labels: Mapping[str, str] | None = None,
    reference: pd.DataFrame | None = None,
    label: str = "tab:qd-coefficients",
    digits: int = 3,
) -> str:
    r"""A compact LaTeX table of α, β, α − β with intervals, n and R² per dataset.

    Parameters
    ----------
    coefs
        :func:`~qdanalysis.analysis.regression.coefficient_table` output (``dataset, term,
        estimate, ci_low, ci_high, n_obs, r2``).
    caption
        Plain text (escaped here): what was fitted and how (aggregator, proposers, interval
        method, p-value convention).
    labels
        Dataset id -> human label (escaped); ids without one show the id.
    reference
        Published rows to set under their matching dataset: ``dataset`` (ours), ``name``,
        ``term, estimate, pm`` (a standard error: ±1.96·pm intervals), ``r2`` (e.g.
        :func:`~qdanalysis.analysis.paper.paper_rows`).
    label
        The ``\label`` key.
    digits
        Significant digits of every number.

    Returns
    -------
    str
        A ``table`` environment with a booktabs ``tabular`` (needs ``\usepackage{booktabs}``).
    """
    labels = labels or {}
    head = r"Dataset & $n$ & $\alpha$ & $\beta$ & $\alpha-\beta$ & $R^2$ \\"
    body = []
    for ds, g in coefs.groupby("dataset", sort=True):
        t = g.set_index("term")
        cells = [latex_escape(labels.get(str(ds), ds)), str(int(t["n_obs"].iloc[0]))]
        for term in ("quality_z", "diversity_z", "quality_z - diversity_z"):
            r = t.loc[term] if term in t.index else None
            cells.append(
                "" if r is None else _ci_cell(r["estimate"], r["ci_low"], r["ci_high"], digits)
            )
        cells.append(format_number(float(t["r2"].iloc[0]), digits=digits))
        body.append(" & ".join(cells) + r" \\")
        ref = reference[reference["dataset"] == ds] if reference is not None else None
        if ref is not None and not ref.empty:
            rt = ref.set_index("term")
            cells = [latex_escape(str(ref["name"].iloc[0])), ""]
            for term in ("quality_z", "diversity_z"):
                e, pm = float(rt.loc[term, "estimate"]), float(rt.loc[term, "pm"])
                cells.append(_ci_cell(e, e - 1.96 * pm, e + 1.96 * pm, digits))
            cells += ["", format_number(float(rt["r2"].iloc[0]), digits=digits)]
            body.append(r"\quad " + " & ".join(cells) + r" \\")
    return "\n".join(
        [
            r"\begin{table}",
            r"\centering",
            r"\caption{" + latex_escape(caption) + "}",
            r"\label{" + latex_escape(label) + "}",
            r"\begin{tabular}{lrlllr}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )
