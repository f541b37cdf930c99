"""The tables and figures of one fit, computed and written together (``fit`` and ``study``).

:func:`fit_tables` computes every table derived from an :class:`~qdanalysis.analysis.pipeline.
Analysis` (uncertainty under several covariances, R², diagnostics, an optional bootstrap and
sensitivity grid) before anything is written; :func:`save_fit` writes them with the QD table,
the pair table, the coefficients and the figures into a staging directory and publishes them
together, each with its JSON provenance sidecar. ``python -m qdanalysis.fit`` and a study's
fit step both call these, so the two write the same files.

Neighbours: :mod:`qdanalysis.analysis.export` (``save_table``, ``save_figure``, sidecars),
:mod:`qdanalysis.analysis.plotting` (the figures), :mod:`qdanalysis.analysis.report` (the HTML
page that reads what this writes).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import staged_dir
from ..errors import QDAnalysisWarning

__all__ = ["analyze_with_tables", "fit_tables", "save_fit"]


def analyze_with_tables(
    outputs: Any,
    spec: Any,
    *,
    cache: str | Path | bool = True,
    progress: bool = True,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    sensitivity: bool = False,
) -> tuple[Any, dict[str, Any], list[str]]:
    """:func:`~qdanalysis.analysis.pipeline.analyze` and :func:`fit_tables` in one step, with
    the lines of the toolkit warnings they raised (for a report).

    The warnings are recorded while the analysis runs and issued again once it ends or fails,
    so a caller sees each once, after the progress bars.

    Returns
    -------
    tuple
        ``(analysis, tables, warning_lines)``.
    """
    from .pipeline import analyze

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QDAnalysisWarning)
            res = analyze(outputs, spec, cache=cache, progress=progress)
            tables = fit_tables(
                res,
                outputs,
                bootstrap=bootstrap,
                bootstrap_seed=bootstrap_seed,
                sensitivity=sensitivity,
                progress=progress,
            )
    finally:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    lines = [str(w.message) for w in caught if issubclass(w.category, QDAnalysisWarning)]
    return res, tables, list(dict.fromkeys(lines))


def fit_tables(
    res: Any,
    outputs: Any,
    *,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    sensitivity: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Every derived table of an analysis, by stem (``"_boot"``: the bootstrap result or None).

    Parameters
    ----------
    res
        The :class:`~qdanalysis.analysis.pipeline.Analysis`.
    outputs
        The outputs table it analysed (the sensitivity grid re-measures it).
    bootstrap
        Bootstrap replicates over questions (0: none).
    bootstrap_seed
        Seed of the bootstrap resampling.
    sensitivity
        Also refit under every quality and diversity measure.
    progress
        Progress bars on stderr.

    Returns
    -------
    dict
        ``uncertainty``, ``r2``, ``diagnostics`` (DataFrames), ``_boot`` and, with
        ``sensitivity``, ``sensitivity``.
    """
    from .uncertainty import bootstrap_coefs, diagnostics_table, r2_table, uncertainty_table

    spec = res.spec
    boot = None
    if bootstrap:
        boot = bootstrap_coefs(res, n_boot=bootstrap, seed=bootstrap_seed, progress=progress)
    fit_table = res.fit_table
    covs = list(dict.fromkeys(["nonrobust", "HC3", spec.cov_type]))
    tables: dict[str, Any] = {
        "uncertainty": uncertainty_table(fit_table, cov_types=covs, bootstrap=boot, ddof=spec.ddof),
        "r2": r2_table(fit_table, ddof=spec.ddof),
        "diagnostics": diagnostics_table(fit_table),
        "_boot": boot,
    }
    if sensitivity:
        from .sensitivity import measure_table, sensitivity_table

        tables["sensitivity"] = sensitivity_table(measure_table(res, outputs), spec=spec)
    return tables


#: Axis-label texts of accuracies -> their wording for continuous scores (judge preferences).
_SCORE_UNITS = {
    "accuracy points": "score points (×100)",
    "mean accuracy": "mean score",
    "accuracy (%)": "mean score (×100)",
    "(%)": "(×100)",
}


def _score_units(fig: Any) -> None:
    """Relabel a figure's axes for continuous scores: they are mean scores ×100, not %."""
    for ax in fig.axes:
        for get, put in ((ax.get_xlabel, ax.set_xlabel), (ax.get_ylabel, ax.set_ylabel)):
            text = get()
            for old, new in _SCORE_UNITS.items():
                text = text.replace(old, new)
            put(text)


def _save_figures(res: Any, unc: Any, stage: Path, prov: Any, width: str) -> list[Path]:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from .export import save_figure
    from .paper import table4
    from .plotting import (
        coefficient_figure,
        figure,
        forest_figure,
        paper_style,
        plot_residuals,
        qd_scatter_figure,
    )
    from .uncertainty import residual_frame

    written: list[Path] = []
    with paper_style():
        figs = {
            "fig_coefficients": coefficient_figure(
                res.coefficients, reference=table4(), width=width
            ),
            "fig_uncertainty": forest_figure(unc, width="double"),
            "fig_qd_scatter": qd_scatter_figure(res.qd_table, width="double"),
        }
        names = sorted(res.qd_table["dataset"].unique())
        fig, ax = figure(width="double", height=2.0, ncols=len(names))
        resid = residual_frame(res.fits)
        for a, ds in zip(ax[0], names, strict=True):
            plot_residuals(resid, dataset=ds, ax=a)
            a.set_title(ds, fontsize=7)
        figs["fig_residuals"] = fig
        for stem, f in figs.items():
            if res.parameters.get("score_scale") == "continuous":
                _score_units(f)
            written += save_figure(f, stem, out_dir=stage, provenance=prov)
            plt.close(f)
    return written


def save_fit(
    res: Any,
    tables: dict[str, Any],
    out: str | Path,
    provenance: Any,
    *,
    formats: Sequence[str] = ("csv",),
    figures: bool = True,
    width: str = "single",
) -> list[Path]:
    """Write every table and figure of a fit into ``out``, all published together.

    Parameters
    ----------
    res
        The :class:`~qdanalysis.analysis.pipeline.Analysis`.
    tables
        :func:`fit_tables`'s result.
    out
        The output directory.
    provenance
        The :class:`~qdanalysis.analysis.export.Provenance` of every sidecar.
    formats
        Formats of the summary tables (``csv``, ``md``, ``tex``).
    figures
        Also write the figures (PDF and PNG).
    width
        Width of the coefficient figure (``single`` or ``double``).

    Returns
    -------
    list of pathlib.Path
        The files written, under ``out``.
    """
    from .export import save_table

    out = Path(out)
    fmts = list(dict.fromkeys(formats))
    boot = tables["_boot"]
    prov = provenance
    with staged_dir(out) as stage:
        written = save_table(res.qd_table, "qd_table", out_dir=stage, provenance=prov)
        written += save_table(
            res.pairs, "pairs", out_dir=stage, formats=["parquet"], provenance=prov
        )
        written += save_table(
            res.coefficients, "coefficients", out_dir=stage, formats=fmts, provenance=prov
        )
        for stem in ("uncertainty", "r2", "diagnostics"):
            written += save_table(tables[stem], stem, out_dir=stage, formats=fmts, provenance=prov)
        if boot is not None:
            written += save_table(boot.draws, "bootstrap_draws", out_dir=stage, provenance=prov)
        if "sensitivity" in tables:
            written += save_table(
                tables["sensitivity"], "sensitivity", out_dir=stage, formats=fmts, provenance=prov
            )
        if figures:
            written += _save_figures(res, tables["uncertainty"], stage, prov, width)
    return [out / w.name for w in written]
