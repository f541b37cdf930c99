"""An interactive HTML report of a fit's output directory, readable offline from disk.

:func:`write_report` reads what ``python -m qdanalysis.fit --out-dir DIR`` wrote (``qd_table.csv``,
``coefficients.csv``, the optional ``uncertainty.csv`` and ``diagnostics.csv``, and their
``<stem>.json`` provenance sidecars) plus the outputs table the fit read, and writes one HTML file
with its data embedded and plotly's JavaScript inlined: no server, no network. The page shows the
numbers of the tables as they are (quality, diversity and performance are never recomputed here);
per-question details come from the outputs table: each slot's output, answer and correctness, and
the aggregator's output (runner rows) or the shared vote kernel's score (:mod:`qdanalysis.votes`).

Size: the overview (settings, coefficients, one point per configuration) is parsed on load; the
per-question details sit in separate JSON blocks parsed only when a configuration is opened. When
those blocks exceed ``max_inline_bytes`` (default :data:`MAX_INLINE_BYTES`, 32 MiB), they are
written instead as small scripts in a ``<stem>_files/`` folder beside the page, which the page
loads on demand (still from disk, still offline).

Neighbours: :mod:`qdanalysis.analysis.export` (sidecars), :mod:`qdanalysis.analysis.paper`
(Table 4 beside our coefficients), :mod:`qdanalysis.analysis._report_page` (the page itself).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._hashing import file_sha256
from .._io import atomic_write
from ..errors import ConfigError, DataError, DataWarning
from ..outputs import add_proposer_column, load_outputs, proposer_rows
from ..votes import answer_codes, oracle_scores, plurality_vote_scores
from .export import Provenance, _write_sidecar
from .methods import method_table, single_model_table

__all__ = [
    "MAX_INLINE_BYTES",
    "FitDir",
    "ReportData",
    "build_report_data",
    "read_fit_dir",
    "write_report",
]

#: Above this many bytes of per-question details the page keeps them in a folder beside it.
MAX_INLINE_BYTES = 32 * 1024 * 1024

_REQUIRED = ("qd_table.csv", "coefficients.csv")
_OPTIONAL = ("uncertainty", "diagnostics", "r2")
_USAGE_COLUMNS = ("role", "prompt_tokens", "completion_tokens", "latency_s")


@dataclass(frozen=True)
class FitDir:
    """The tables and sidecars of one fit output directory, as written."""

    path: Path
    qd_table: pd.DataFrame
    coefficients: pd.DataFrame
    tables: Mapping[str, pd.DataFrame]
    """Optional tables present: ``uncertainty``, ``diagnostics``, ``r2``."""
    provenance: Mapping[str, Any]
    """The ``qd_table.json`` sidecar."""
    files: tuple[Path, ...]
    """Every table and sidecar read (inputs of the report's own sidecar)."""


@dataclass(frozen=True)
class ReportData:
    """What the page embeds: an overview parsed on load and detail chunks parsed on demand."""

    overview: dict[str, Any]
    chunks: dict[str, Any] = field(default_factory=dict)
    """Key (``p<dataset>``, ``c<configuration>``) -> JSON-ready detail data."""
    output_files: tuple[Path, ...] = ()


def read_fit_dir(fit_dir: str | Path) -> FitDir:
    """Read a fit output directory (see :mod:`qdanalysis.cli.fit`).

    Raises
    ------
    ConfigError
        If ``fit_dir`` is not a directory holding ``qd_table.csv`` and ``coefficients.csv``.
    """
    d = Path(fit_dir)
    missing = [n for n in _REQUIRED if not (d / n).is_file()]
    if not d.is_dir() or missing:
        what = "is not a directory" if not d.is_dir() else f"has no {' nor '.join(missing)}"
        raise ConfigError(
            f"report fit_dir: expected a fit or study output directory (qd_table.csv and "
            f"coefficients.csv); got {str(fit_dir)!r}, which {what}. Run "
            f"`python -m qdanalysis.fit --out-dir {fit_dir}` first, or pass the directory it wrote."
        )
    files = [d / n for n in _REQUIRED]
    qd = pd.read_csv(d / "qd_table.csv", dtype={"config_id": str, "name": str, "dataset": str})
    coefs = pd.read_csv(d / "coefficients.csv", dtype={"dataset": str})
    tables = {}
    for stem in _OPTIONAL:
        if (d / f"{stem}.csv").is_file():
            tables[stem] = pd.read_csv(d / f"{stem}.csv", dtype={"dataset": str})
            files.append(d / f"{stem}.csv")
    side = d / "qd_table.json"
    prov: dict[str, Any] = {}
    if side.is_file():
        prov = json.loads(side.read_text(encoding="utf-8"))
        files.append(side)
    return FitDir(
        path=d, qd_table=qd, coefficients=coefs, tables=tables, provenance=prov, files=tuple(files)
    )


def _resolve_inputs(fit: FitDir) -> tuple[list[Path], list[str]]:
    """The outputs files named in the sidecar: as recorded (relative to the working directory),
    or by name inside the fit directory or beside it (the sidecar keeps only the name of a file
    outside the working directory)."""
    found: list[Path] = []
    notes: list[str] = []
    for item in fit.provenance.get("inputs") or []:
        rel = Path(str(item.get("path", "")))
        cands = [rel, fit.path / rel, fit.path / rel.name, fit.path.parent / rel.name]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            notes.append(
                f"outputs file {str(rel)!r} named in qd_table.json was not found; per-question "
                "details are missing. Pass outputs= (--outputs) to show them."
            )
            continue
        want = item.get("sha256")
        if want and file_sha256(hit) != want:
            raise DataError(
                f"report outputs: expected {str(hit)!r} to be the file the fit read (sha256 "
                f"{want[:12]}…); its content differs. Rerun the fit, or pass outputs= the file "
                "it read.",
                path=str(hit),
            )
        found.append(hit)
    return found, notes


def _clean(v: Any) -> Any:
    """A JSON-ready scalar: NaN and infinities become null, numpy scalars Python ones."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")]


def _columns(df: pd.DataFrame) -> dict[str, list[Any]]:
    return {str(c): [_clean(v) for v in df[c].tolist()] for c in df.columns}


def _json_list(text: Any) -> list[Any]:
    return list(json.loads(text)) if isinstance(text, str) and text else []


def _usage(outputs: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """Calls, tokens and latency per (dataset, role, model) of a run's rows; None without them."""
    if outputs is None or not all(c in outputs.columns for c in _USAGE_COLUMNS):
        return None
    o = outputs.assign(
        _ok=(outputs["status"] == "ok") if "status" in outputs.columns else True,
        _cached=outputs["cached"].fillna(False).astype(bool) if "cached" in outputs else False,
    )
    g = o.groupby(["dataset", "role", "model"], sort=True, dropna=False)
    tab = g.agg(
        calls=("model", "size"),
        ok=("_ok", "sum"),
        cached=("_cached", "sum"),
        prompt_tokens=("prompt_tokens", "sum"),
        completion_tokens=("completion_tokens", "sum"),
        latency_mean_s=("latency_s", "mean"),
        latency_max_s=("latency_s", "max"),
    ).reset_index()
    return _records(tab)


def _warnings(fit: FitDir, extra: Sequence[str]) -> list[str]:
    """Warnings recorded by the fit (a ``warnings`` list in ``qd_table.json``, at its top level or
    in its parameters), the collinearity flags of ``diagnostics.csv``, a small-sample note, and
    ``extra``."""
    params = fit.provenance.get("parameters") or {}
    recorded = [*(fit.provenance.get("warnings") or []), *(params.get("warnings") or [])]
    out = [str(w) for w in recorded]
    diag = fit.tables.get("diagnostics")
    if diag is not None and "collinear" in diag.columns:
        for r in diag[diag["collinear"].astype(bool)].itertuples(index=False):
            out.append(
                f"{r.dataset}: quality and diversity are collinear (diagnostics.csv: "
                f"r = {r.corr_quality_diversity:.3f}, VIF = {r.vif:.2f}); α and β are unstable."
            )
    for r in fit.coefficients.drop_duplicates("dataset").itertuples(index=False):
        if "n_obs" in fit.coefficients.columns and int(r.n_obs) < 30:
            out.append(
                f"{r.dataset}: only {int(r.n_obs)} configurations in the fit; standard errors "
                "and p-values are fragile."
            )
    return list(dict.fromkeys([*out, *extra]))


def _overview(fit: FitDir, notes: Sequence[str]) -> dict[str, Any]:
    from .paper import PAPER_ID, table4

    qd = fit.qd_table
    params = dict(fit.provenance.get("parameters") or {})
    return {
        "title": f"qdanalysis report: {fit.path.resolve().name}",
        "provenance": {k: v for k, v in fit.provenance.items() if k != "parameters"},
        "parameters": params,
        "datasets": sorted(qd["dataset"].unique().tolist()),
        "configs": _columns(qd),
        "coefficients": _records(fit.coefficients),
        "uncertainty": _records(fit.tables["uncertainty"]) if "uncertainty" in fit.tables else [],
        "r2": _records(fit.tables["r2"]) if "r2" in fit.tables else [],
        "paper": _records(table4()),
        "paper_id": PAPER_ID,
        "methods": _records(method_table(qd)),
        "warnings": list(notes),
        "baselines": [],
    }


@dataclass(frozen=True)
class _Pool:
    """One dataset's proposer outputs as a (question x slot) grid."""

    qids: list[str]
    slot_keys: list[str]
    grid: np.ndarray  # (n_questions, n_slots) of row positions into ``rows``, -1 when absent
    rows: pd.DataFrame


def _natural(text: str) -> list[Any]:
    """Sort key that orders ``q/2`` before ``q/10``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)]


def _pool(rows: pd.DataFrame) -> _Pool:
    rows = rows.reset_index(drop=True)
    qids = sorted(rows["question_id"].astype(str).unique().tolist(), key=_natural)
    keys = (rows["proposer"].astype(str) + "#" + rows["sample_index"].astype(str)).to_numpy()
    slot_keys = sorted(set(keys.tolist()))
    qpos = {q: i for i, q in enumerate(qids)}
    spos = {k: i for i, k in enumerate(slot_keys)}
    grid = np.full((len(qids), len(slot_keys)), -1, dtype=np.int64)
    qi = rows["question_id"].astype(str).map(qpos).to_numpy()
    si = np.array([spos[k] for k in keys], dtype=np.int64)
    grid[qi, si] = np.arange(len(rows))
    return _Pool(qids=qids, slot_keys=slot_keys, grid=grid, rows=rows)


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _texts(df: pd.DataFrame, column: str) -> list[str | None]:
    """A column as texts (null -> None), or all None when the column is absent."""
    if column not in df.columns:
        return [None] * len(df)
    return [_text(v) for v in df[column].tolist()]


def _pool_chunk(pool: _Pool) -> dict[str, Any]:
    r = pool.rows
    first = r.drop_duplicates("question_id")
    first = first.set_index(first["question_id"].astype(str))
    cells = list(
        zip(
            _texts(r, "output"),
            _texts(r, "answer"),
            [_clean(c) for c in r["correct"].tolist()],
            strict=True,
        )
    )
    slots = {
        k: [list(cells[i]) if i >= 0 else None for i in pool.grid[:, j].tolist()]
        for j, k in enumerate(pool.slot_keys)
    }
    ref = first["reference"] if "reference" in first else pd.Series(None, index=first.index)
    return {
        "qids": pool.qids,
        "questions": [_text(first.at[q, "question"]) for q in pool.qids],
        "references": [_text(ref.get(q)) for q in pool.qids],
        "slots": slots,
    }


def _vote_scores(pool: _Pool, slot_keys: list[str], aggregator: str) -> list[float | None]:
    """Per-question score of an offline aggregator, from the shared vote kernel."""
    cols = [pool.slot_keys.index(k) if k in pool.slot_keys else -1 for k in slot_keys]
    idx = pool.grid[:, cols] if -1 not in cols else np.full((len(pool.qids), 1), -1)
    present: list[bool] = np.asarray((idx >= 0).all(axis=1)).tolist()
    r = pool.rows
    correct = r["correct"].to_numpy(dtype=np.float64)[np.where(idx >= 0, idx, 0)]
    if aggregator == "oracle":
        score = oracle_scores(correct)
    else:
        codes = answer_codes(r["answer_key"].tolist()) if "answer_key" in r else None
        keys = np.full(idx.shape, -1) if codes is None else codes[np.where(idx >= 0, idx, 0)]
        score = plurality_vote_scores(keys, correct)
    return [float(s) if ok else None for s, ok in zip(score.tolist(), present, strict=True)]


def _aggregator_steps(agg: pd.DataFrame, qids: list[str]) -> list[list[list[Any]] | None]:
    """Every aggregator row of one configuration per question, the final one last.

    The final row is the one marked ``is_final`` when that column is filled, else the last step
    (the rule of the performance engine); the others are shown in step order before it.
    """
    step = agg["step"].fillna(0) if "step" in agg else pd.Series(0, index=agg.index)
    final = (
        agg["is_final"].fillna(False).astype(bool)
        if "is_final" in agg and agg["is_final"].notna().any()
        else pd.Series(False, index=agg.index)
    )
    agg = agg.assign(agg_step=step, agg_final=final).sort_values(
        ["agg_final", "agg_step"], kind="stable"
    )
    by: dict[str, list[list[Any]]] = {}
    for q, st, m, o, a, c in zip(
        agg["question_id"].astype(str),
        agg["agg_step"],
        agg["model"].astype(str),
        _texts(agg, "output"),
        _texts(agg, "answer"),
        agg["correct"].tolist(),
        strict=True,
    ):
        by.setdefault(q, []).append([_clean(st), m, o, a, _clean(c)])
    return [by.get(q) for q in qids]


def _final_scores(steps: list[list[list[Any]] | None]) -> list[float | None]:
    return [s[-1][4] if s else None for s in steps]


def _detail_chunks(
    qd: pd.DataFrame, outputs: pd.DataFrame, rows: pd.DataFrame
) -> tuple[dict[str, Any], list[str]]:
    """Pool chunks (one per dataset) and configuration chunks (one per qd_table row).

    ``rows`` are the proposer rows of ``outputs`` with their ``proposer`` column.
    """
    chunks: dict[str, Any] = {}
    notes: list[str] = []
    has_agg = "role" in outputs.columns and "config_id" in outputs.columns
    agg_by: dict[Any, pd.DataFrame] = {}
    if has_agg:
        agg_rows = outputs[outputs["role"] == "aggregator"]
        if "status" in agg_rows.columns:
            agg_rows = agg_rows[agg_rows["status"].isna() | (agg_rows["status"] == "ok")]
        agg_by = dict(tuple(agg_rows.groupby(["dataset", "config_id"], sort=False)))
    datasets = sorted(qd["dataset"].unique().tolist())
    for di, ds in enumerate(datasets):
        sub = rows[rows["dataset"] == ds]
        if sub.empty:
            notes.append(f"{ds}: the outputs hold no proposer rows of this dataset.")
            continue
        pool = _pool(sub)
        chunks[f"p{di}"] = _pool_chunk(pool)
        for ci in np.flatnonzero((qd["dataset"] == ds).to_numpy()).tolist():
            row = qd.iloc[ci]
            keys = [
                f"{t}#{s}"
                for t, s in zip(
                    _json_list(row["proposers"]), _json_list(row["samples"]), strict=True
                )
            ]
            agg = agg_by.get((ds, row["config_id"]))
            if agg is not None:
                steps = _aggregator_steps(agg, pool.qids)
                scores, source = _final_scores(steps), "final aggregator row (correct)"
            else:
                steps = None
                kind = "oracle" if str(row.get("aggregator")) == "oracle" else "plurality_vote"
                scores, source = _vote_scores(pool, keys, kind), f"{kind} (shared vote kernel)"
            chunks[f"c{ci}"] = {"slots": keys, "score": scores, "source": source, "agg": steps}
    return chunks, notes


def _load(paths: Sequence[Path]) -> tuple[pd.DataFrame, list[str]]:
    """Load outputs, keeping the data warnings the fit also saw as lines for the page."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        df = load_outputs(list(paths))
    return df, [f"outputs: {w.message}" for w in caught if issubclass(w.category, DataWarning)]


def build_report_data(
    fit: FitDir,
    *,
    outputs: Sequence[str | Path] | None = None,
    warnings: Sequence[str] = (),
) -> ReportData:
    """Assemble what the page embeds from a fit directory and the outputs it read.

    Parameters
    ----------
    fit
        :func:`read_fit_dir`'s result.
    outputs
        Outputs files (or directories) for the per-question details; default: the inputs named
        in ``qd_table.json``, found relative to the working directory or ``fit.path`` and
        checked against their recorded SHA-256.
    warnings
        Further warning lines to show (e.g. those the fit raised while running).

    Raises
    ------
    DataError
        If a sidecar's input file exists but its content is not what the fit read.
    """
    from ..outputs import find_output_files

    notes: list[str] = []
    if outputs is None:
        files, notes = _resolve_inputs(fit)
    else:
        files = []
        for p in outputs:
            pp = Path(p)
            files.extend(find_output_files(pp) if pp.is_dir() else [pp])
    overview = _overview(fit, [])
    chunks: dict[str, Any] = {}
    usage = None
    if files:
        df, load_notes = _load(files)
        notes += load_notes
        proposer_key = (fit.provenance.get("parameters") or {}).get("proposer_key") or ["model"]
        rows = add_proposer_column(proposer_rows(df), list(proposer_key))
        chunks, more = _detail_chunks(fit.qd_table, df, rows)
        overview["baselines"] = _records(single_model_table(df, proposer_key=proposer_key))
        notes += more
        usage = _usage(df)
    overview["usage"] = usage
    overview["warnings"] = _warnings(fit, [*notes, *warnings])
    overview["details"] = {"available": bool(chunks)}
    return ReportData(overview=overview, chunks=chunks, output_files=tuple(files))


def _clear_files_dir(folder: Path) -> None:
    """Remove the detail scripts an earlier report left (only those; the folder if then empty)."""
    if not folder.is_dir():
        return
    for f in folder.iterdir():
        if f.is_file() and re.fullmatch(r"[pc]\d+\.js", f.name):
            f.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def write_report(
    fit_dir: str | Path,
    *,
    outputs: Sequence[str | Path] | None = None,
    out: str | Path | None = None,
    warnings: Sequence[str] = (),
    max_inline_bytes: int = MAX_INLINE_BYTES,
    argv: Sequence[str] | None = None,
) -> Path:
    """Write the HTML report of a fit output directory, with a ``.json`` provenance sidecar.

    Parameters
    ----------
    fit_dir
        What ``python -m qdanalysis.fit --out-dir`` wrote.
    outputs
        Outputs files for the per-question details (default: those named in the sidecar).
    out
        The page to write (default ``<fit_dir>/report.html``).
    warnings
        Further warning lines to show on the page.
    max_inline_bytes
        Above this size the per-question details go to ``<stem>_files/`` beside the page.
    argv
        The command line, recorded in the sidecar.

    Returns
    -------
    pathlib.Path
        The HTML file written.
    """
    from ._report_page import render_page

    fit = read_fit_dir(fit_dir)
    data = build_report_data(fit, outputs=outputs, warnings=warnings)
    page = Path(out) if out is not None else fit.path / "report.html"
    if page.suffix != ".html":
        raise ConfigError(f"write_report out: expected a path ending in .html; got {str(out)!r}.")
    html, files = render_page(
        data, files_dir=f"{page.stem}_files", max_inline_bytes=max_inline_bytes
    )
    page.parent.mkdir(parents=True, exist_ok=True)
    _clear_files_dir(page.parent / f"{page.stem}_files")
    for name, text in files.items():
        target = page.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    with atomic_write(page, "w", encoding="utf-8") as fh:
        fh.write(html)
    prov = Provenance(
        inputs=[*fit.files, *data.output_files],
        parameters={
            "fit_provenance": dict(fit.provenance),
            "details": "split" if files else "inline",
            "max_inline_bytes": max_inline_bytes,
        },
        argv=argv,
    )
    _write_sidecar(page.with_suffix(".json"), prov, [page, *(page.parent / n for n in files)])
    return page
