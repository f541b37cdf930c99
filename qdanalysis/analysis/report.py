"""An interactive HTML report of a fit's output directory, readable offline from disk.

:func:`write_report` reads what ``python -m qdanalysis.fit --out-dir DIR`` wrote (``qd_table.csv``,
``coefficients.csv``, ``pairs.parquet``, the optional ``uncertainty.csv`` and ``diagnostics.csv``,
and their ``<stem>.json`` provenance sidecars) plus the outputs table the fit read, and writes one
HTML file with its data embedded and plotly's JavaScript inlined: no server, no network. The page
shows the numbers of the tables as they are and recomputes none: each configuration's quality,
diversity and performance from ``qd_table.csv``, and per question those of ``pairs.parquet`` (the
measuring engine's pair table, :mod:`qdanalysis.analysis.pairs`). From the outputs table come
only texts and labels: the output, answer and correctness filling each slot (located by the
engine's :func:`~qdanalysis.analysis.pairs.slot_index`) and a run's aggregator rows, the final one
marked by the aggregator registry's rule
(:func:`~qdanalysis.analysis.aggregators.final_aggregator_positions`).

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
from numpy.typing import NDArray

from .._hashing import file_sha256
from .._io import atomic_write, staged_dir
from ..configs import ConfigSpec, ProposerSlot
from ..errors import ConfigError, DataError, DataWarning
from ..outputs import add_proposer_column, is_outputs_file, load_outputs, proposer_rows
from .aggregators import final_aggregator_positions
from .export import Provenance, _write_sidecar
from .methods import method_table, single_model_table
from .pairs import SlotIndex, slot_index

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
_PAIRS = "pairs.parquet"
_PAIR_MEASURES = ("quality", "diversity", "performance")


@dataclass(frozen=True)
class FitDir:
    """The tables and sidecars of one fit output directory, as written."""

    path: Path
    qd_table: pd.DataFrame
    coefficients: pd.DataFrame
    tables: Mapping[str, pd.DataFrame]
    """Optional tables present: ``uncertainty``, ``diagnostics``, ``r2``."""
    pairs: pd.DataFrame | None
    """``pairs.parquet``: the measuring engine's quality, diversity and performance per
    (dataset, configuration, question), as the fit wrote them; None for a fit made before the
    pair table was written."""
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
    pairs = None
    if (d / _PAIRS).is_file():
        pairs = pd.read_parquet(d / _PAIRS)
        files.append(d / _PAIRS)
    side = d / "qd_table.json"
    prov: dict[str, Any] = {}
    if side.is_file():
        prov = json.loads(side.read_text(encoding="utf-8"))
        files.append(side)
    return FitDir(
        path=d,
        qd_table=qd,
        coefficients=coefs,
        tables=tables,
        pairs=pairs,
        provenance=prov,
        files=tuple(files),
    )


def _resolve_inputs(fit: FitDir) -> tuple[list[Path], list[str]]:
    """The outputs files named in the sidecar: as recorded (relative to the working directory),
    or by name inside the fit directory or beside it (the sidecar keeps only the name of a file
    outside the working directory)."""
    found: list[Path] = []
    notes: list[str] = []
    for item in fit.provenance.get("inputs") or []:
        rel = Path(str(item.get("path", "")))
        if not is_outputs_file(rel):
            continue  # another input of the fit (a study's TOML file), not an outputs table
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


def _natural(text: str) -> list[Any]:
    """Sort key that orders ``q/2`` before ``q/10``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)]


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _texts(df: pd.DataFrame, column: str) -> list[str | None]:
    """A column as texts (null -> None), or all None when the column is absent."""
    if column not in df.columns:
        return [None] * len(df)
    return [_text(v) for v in df[column].tolist()]


def _slot_indexes(qd: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[list[int], SlotIndex]]:
    """The engine's slot index of one dataset's qd_table rows, one per slot count, with the
    positions in ``qd`` of its configurations. The configurations are rebuilt from the table's
    ``proposers`` and ``samples`` (the lookup reads only the slots)."""
    out = []
    for _, grp in qd.groupby(qd["proposers"].map(lambda t: len(_json_list(t))), sort=True):
        specs = [
            ConfigSpec(
                method="mixed_moa",
                proposers=tuple(
                    ProposerSlot(model=t, sample_index=int(k))
                    for t, k in zip(_json_list(p), _json_list(s), strict=True)
                ),
            )
            for p, s in zip(grp["proposers"], grp["samples"], strict=True)
        ]
        out.append((grp.index.tolist(), slot_index(rows, specs)))
    return out


def _slot_key(slot: ProposerSlot) -> str:
    return f"{slot.model}#{slot.sample_index}"


def _pool_chunk(indexes: list[SlotIndex], order: np.ndarray) -> dict[str, Any]:
    """One dataset's questions and the output, answer and correctness filling each slot (rows
    located by the engine's slot index), questions in ``order``."""
    frame = indexes[0].frame
    cells = list(
        zip(
            _texts(frame, "output"),
            _texts(frame, "answer"),
            [_clean(c) for c in frame["correct"].tolist()],
            strict=True,
        )
    )
    slots: dict[str, list[list[Any] | None]] = {}
    for idx in indexes:
        for c, spec in enumerate(idx.configs):
            for j, slot in enumerate(spec.proposers):
                col = idx.rows[c, order, j].tolist()
                slots.setdefault(_slot_key(slot), [list(cells[r]) if r >= 0 else None for r in col])
    qids = [str(q) for q in indexes[0].question_ids[order]]
    first = frame.drop_duplicates("question_id")
    first = first.set_index(first["question_id"].astype(str))
    ref = first["reference"] if "reference" in first else pd.Series(None, index=first.index)
    return {
        "qids": qids,
        "questions": [_text(first.at[q, "question"]) for q in qids],
        "references": [_text(ref.get(q)) for q in qids],
        "slots": slots,
    }


def _final_flags(outputs: pd.DataFrame) -> NDArray[np.bool_]:
    """Which rows of ``outputs`` are final aggregator rows, by the registry's rule."""
    flags = np.zeros(len(outputs), dtype=bool)
    flags[final_aggregator_positions(outputs)] = True
    return flags


def _aggregator_steps(agg: pd.DataFrame, qids: list[str]) -> list[list[list[Any]] | None]:
    """Every aggregator row of one configuration per question, in step order, each as
    ``[step, model, output, answer, correct, final]`` (``final`` from :func:`_final_flags`)."""
    agg = agg.sort_values("step", kind="stable") if "step" in agg else agg
    by: dict[str, list[list[Any]]] = {}
    for q, st, m, o, a, c, f in zip(
        agg["question_id"].astype(str),
        agg["step"] if "step" in agg else [None] * len(agg),
        agg["model"].astype(str),
        _texts(agg, "output"),
        _texts(agg, "answer"),
        agg["correct"].tolist(),
        agg["_final"].tolist(),
        strict=True,
    ):
        by.setdefault(q, []).append([_clean(st), m, o, a, _clean(c), bool(f)])
    return [by.get(q) for q in qids]


def _pair_values(
    table: pd.DataFrame | None, pairs: pd.DataFrame | None, qids: list[str]
) -> dict[str, list[Any]]:
    """One configuration's per-question quality, diversity and performance as the engine wrote
    them to ``pairs.parquet`` (``table``; ``pairs`` its rows of this configuration): null for a
    question the engine left out, and everywhere when the fit directory has no pair table."""
    if table is None:
        return {m: [None] * len(qids) for m in _PAIR_MEASURES}
    if pairs is None:
        pairs = table.iloc[:0]
    by = pairs.set_index(pairs["question_id"].astype(str)).reindex(qids)
    return {m: [_clean(v) for v in by[m].tolist()] for m in _PAIR_MEASURES}


def _aggregator_groups(outputs: pd.DataFrame) -> dict[Any, pd.DataFrame]:
    """The aggregator rows of ``outputs`` by (dataset, config_id), each marked ``_final``."""
    if "role" not in outputs.columns or "config_id" not in outputs.columns:
        return {}
    o = outputs.reset_index(drop=True).assign(_final=_final_flags(outputs))
    agg = o[o["role"] == "aggregator"]
    return dict(tuple(agg.groupby(["dataset", "config_id"], sort=False)))


def _detail_chunks(
    fit: FitDir, outputs: pd.DataFrame, rows: pd.DataFrame
) -> tuple[dict[str, Any], list[str]]:
    """Pool chunks (one per dataset) and configuration chunks (one per qd_table row).

    ``rows`` are the proposer rows of ``outputs`` with their ``proposer`` column.
    """
    qd = fit.qd_table
    chunks: dict[str, Any] = {}
    notes: list[str] = []
    agg_by = _aggregator_groups(outputs)
    pairs_by = {} if fit.pairs is None else dict(tuple(fit.pairs.groupby(["dataset", "config_id"])))
    for di, ds in enumerate(sorted(qd["dataset"].unique().tolist())):
        sub = rows[rows["dataset"] == ds]
        if sub.empty:
            notes.append(f"{ds}: the outputs hold no proposer rows of this dataset.")
            continue
        groups = _slot_indexes(qd[qd["dataset"] == ds], sub)
        qids0 = groups[0][1].question_ids
        order = np.array(sorted(range(len(qids0)), key=lambda i: _natural(str(qids0[i]))))
        chunks[f"p{di}"] = pool = _pool_chunk([g for _, g in groups], order)
        for positions, idx in groups:
            for ci, spec in zip(positions, idx.configs, strict=True):
                cid = qd.at[ci, "config_id"]
                agg = agg_by.get((ds, cid))
                chunks[f"c{ci}"] = {
                    "slots": [_slot_key(s) for s in spec.proposers],
                    **_pair_values(fit.pairs, pairs_by.get((ds, cid)), pool["qids"]),
                    "agg": None if agg is None else _aggregator_steps(agg, pool["qids"]),
                }
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
    if fit.pairs is None:
        notes.append(
            f"{_PAIRS} is missing from the fit directory (a fit made before it was written): the "
            "page shows no per-question quality, diversity or performance. Rerun `python -m "
            "qdanalysis.fit` to get them."
        )
    if outputs is None:
        files, more = _resolve_inputs(fit)
        notes += more
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
        chunks, more = _detail_chunks(fit, df, rows)
        overview["baselines"] = _records(single_model_table(df, proposer_key=proposer_key))
        notes += more
        usage = _usage(df)
    overview["usage"] = usage
    overview["warnings"] = _warnings(fit, [*notes, *warnings])
    overview["details"] = {"available": bool(chunks), "pairs": fit.pairs is not None}
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
    prov = Provenance(
        inputs=[*fit.files, *data.output_files],
        parameters={
            "fit_provenance": dict(fit.provenance),
            "details": "split" if files else "inline",
            "max_inline_bytes": max_inline_bytes,
        },
        argv=argv,
    )
    # Page, detail files and sidecar are published together or not at all.
    with staged_dir(page.parent) as stage:
        for name, text in {**files, page.name: html}.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(stage / name, "w", encoding="utf-8") as fh:
                fh.write(text)
        _write_sidecar(stage / f"{page.stem}.json", prov, [page, *(page.parent / n for n in files)])
        _clear_files_dir(page.parent / f"{page.stem}_files")
    return page
