"""Paper figures: coefficient comparison and the quality–diversity scatter.

Plot functions follow seaborn's contract: data first, keyword-only options, ``ax=None`` draws on
the current axes, the Axes is returned, nothing is written (see :mod:`qdanalysis.analysis.export`).
Styling comes from :func:`paper_style`, never from global state at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from ..errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.legend import Legend

__all__ = [
    "COLUMN_WIDTHS",
    "OKABE_ITO",
    "TERM_LABELS",
    "coefficient_figure",
    "dataset_labels",
    "figure",
    "forest_figure",
    "paper_style",
    "plot_coefficients",
    "plot_forest",
    "plot_qd_scatter",
    "plot_residuals",
    "plot_scaling",
    "qd_scatter_figure",
    "settings_note",
]

#: Figure widths in inches for single- and double-column layouts.
COLUMN_WIDTHS = {"single": 3.3, "double": 6.9}
TERM_LABELS = {"quality_z": "quality (α)", "diversity_z": "diversity (β)"}
#: Colour-blind-safe colours (Okabe–Ito) for the two terms.
TERM_COLORS = {"quality_z": "#0072B2", "diversity_z": "#E69F00"}


@contextlib.contextmanager
def paper_style(*, font_size: float = 8.0) -> Iterator[None]:
    """A matplotlib style context for print: serif STIX fonts (close to LaTeX's Times/CM),
    TrueType fonts embedded in PDFs, thin lines, no top/right spines."""
    import matplotlib as mpl

    rc = {
        "font.family": "serif",
        "font.serif": ["STIXGeneral", "DejaVu Serif"],
        "mathtext.fontset": "stix",
        "font.size": font_size,
        "axes.titlesize": font_size,
        "axes.labelsize": font_size,
        "xtick.labelsize": font_size - 1,
        "ytick.labelsize": font_size - 1,
        "legend.fontsize": font_size - 1,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.linewidth": 0.6,
        "lines.linewidth": 1.0,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "savefig.dpi": 300,
        "figure.dpi": 100,
    }
    # rc_context's stub wants a dict keyed by a Literal of every rcParams name.
    with mpl.rc_context(rc):  # type: ignore[arg-type]
        yield


def _ax(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.gca()


def _coefficient_rows(
    coefs: pd.DataFrame,
    groups: Sequence[str],
    reference: pd.DataFrame | None,
    *,
    by: str,
    reference_label: str,
    group_labels: Mapping[str, str],
) -> list[tuple[str, pd.DataFrame, bool]]:
    """``(label, rows, is_reference)`` per plotted row.

    A reference with a ``name`` column (:func:`~qdanalysis.analysis.paper.paper_rows`) is
    paired: its rows sit right under the group they match. Without one, the reference's groups
    follow all groups.
    """
    rows = []
    for g in groups:
        rows.append((group_labels.get(g, g), coefs[coefs[by] == g], False))
        if reference is not None and "name" in reference.columns:
            r = reference[reference[by] == g]
            if not r.empty:
                rows.append((str(r["name"].iloc[0]), _reference_ci(r), True))
    if reference is not None and "name" not in reference.columns:
        for g in dict.fromkeys(reference[by].tolist()):
            r = _reference_ci(reference[reference[by] == g])
            rows.append((f"{g} ({reference_label})", r, True))
    return rows


def _reference_ci(r: pd.DataFrame) -> pd.DataFrame:
    """Published rows with ±1.96·pm intervals (pm a standard error)."""
    return r.assign(ci_low=r["estimate"] - 1.96 * r["pm"], ci_high=r["estimate"] + 1.96 * r["pm"])


def _coefficient_marker(
    ax: Any, r: pd.DataFrame, y: float, *, term: str, is_ref: bool, label: str | None
) -> None:
    """One term's estimate with its CI bar at height ``y`` (hollow square for a reference)."""
    est = float(r["estimate"].iloc[0])
    lo, hi = float(r["ci_low"].iloc[0]), float(r["ci_high"].iloc[0])
    color = TERM_COLORS.get(term, None)
    ax.errorbar(
        est,
        y,
        xerr=[[est - lo], [hi - est]],
        fmt="s" if is_ref else "o",
        color=color,
        mfc="white" if is_ref else color,
        ms=4,
        capsize=2,
        lw=1,
        label=label,
    )


def _coefficient_markers(
    ax: Any,
    rows: Sequence[tuple[str, pd.DataFrame, bool]],
    terms: Sequence[str],
    labels: Mapping[str, str],
    reference_label: str,
) -> None:
    """Every row's markers, top to bottom, terms offset within a row; one legend entry each."""
    offsets = np.linspace(0.15, -0.15, len(terms)) if len(terms) > 1 else np.zeros(1)
    n = len(rows)
    seen: set[str] = set()
    for i, (_name, df, is_ref) in enumerate(rows):
        for off, term in zip(offsets, terms, strict=True):
            r = df[df["term"] == term]
            if r.empty:
                continue
            label = None
            key = f"{term}-{is_ref}"
            if key not in seen:
                label = labels.get(term, term) + (f", {reference_label}" if is_ref else "")
                seen.add(key)
            _coefficient_marker(ax, r, n - 1 - i + off, term=term, is_ref=is_ref, label=label)


def plot_coefficients(
    coefs: pd.DataFrame,
    *,
    terms: Sequence[str] = ("quality_z", "diversity_z"),
    reference: pd.DataFrame | None = None,
    reference_label: str = "paper",
    by: str = "dataset",
    labels: Mapping[str, str] = TERM_LABELS,
    group_labels: Mapping[str, str] | None = None,
    ci_label: str = "95% CI",
    ax: Any = None,
) -> Any:
    """Forest plot of standardised coefficients with confidence intervals, groups side by side.

    Parameters
    ----------
    coefs
        Tidy coefficients with columns ``<by>, term, estimate, ci_low, ci_high``.
    terms
        Terms to draw, each in its own colour.
    reference
        Optional published values with ``<by>, term, estimate`` and ``pm`` (a standard error):
        drawn as hollow markers with ±1.96·pm bars. With a ``name`` column (see
        :func:`~qdanalysis.analysis.paper.paper_rows`) each sits, so named, right under the
        group of the same ``<by>``; else in rows labelled ``"<group> (paper)"`` after all groups.
    reference_label
        Suffix for reference rows.
    by
        Grouping column (one row block per group).
    labels
        Legend labels per term.
    group_labels
        Row labels per group (e.g. :func:`dataset_labels`); groups without one show their id.
    ci_label
        What the bars are, for the x-axis label (e.g. ``"95% CI, question-clustered"``).
    ax
        Axes to draw on (default: current axes).

    Returns
    -------
    matplotlib.axes.Axes
        Rows are groups (top to bottom in the order given, references paired or after them),
        x is the coefficient in outcome units per SD; a dashed line marks zero.
    """
    ax = _ax(ax)
    need = {by, "term", "estimate", "ci_low", "ci_high"}
    if not need <= set(coefs.columns):
        raise ConfigError(
            f"plot_coefficients: expected columns {sorted(need)}; got {list(coefs.columns)}."
        )
    groups = list(dict.fromkeys(coefs[by].tolist()))
    rows = _coefficient_rows(
        coefs,
        groups,
        reference,
        by=by,
        reference_label=reference_label,
        group_labels=group_labels or {},
    )
    _coefficient_markers(ax, rows, terms, labels, reference_label)
    n = len(rows)
    if reference is not None and groups and "name" not in reference.columns:
        ax.axhline(n - len(groups) - 0.5, color="0.7", lw=0.5)
    ax.axvline(0, color="0.4", lw=0.6, ls="--")
    ax.set_yticks(range(n))
    ax.set_yticklabels([r[0] for r in rows][::-1])
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel(f"coefficient (accuracy points per SD), {ci_label}")
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 - 0.5 / max(n, 1)),
        ncol=2,
        frameon=False,
        handletextpad=0.3,
        columnspacing=0.8,
    )
    return ax


def coefficient_figure(
    coefs: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    width: str | float = "single",
    title: str | None = None,
    group_labels: Mapping[str, str] | None = None,
    ci_label: str = "95% CI",
    note: str | None = None,
) -> Any:
    """A ready-to-save figure holding :func:`plot_coefficients`; ``note`` (e.g.
    :func:`settings_note`) is printed above the axes."""
    import matplotlib.pyplot as plt

    w = COLUMN_WIDTHS.get(width, width) if isinstance(width, str) else float(width)
    if isinstance(w, str):
        raise ConfigError(f"width: expected 'single', 'double' or inches; got {width!r}.")
    n = coefs["dataset"].nunique() + (
        reference["dataset"].nunique() if reference is not None else 0
    )
    fig, ax = plt.subplots(figsize=(w, 1.1 + 0.45 * n), layout="constrained")
    plot_coefficients(
        coefs, reference=reference, group_labels=group_labels, ci_label=ci_label, ax=ax
    )
    # One legend under the axes, placed by the layout engine (no gap, no overlap).
    handles, labels = ax.get_legend_handles_labels()
    cast("Legend", ax.get_legend()).remove()  # plot_coefficients always draws one
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=2,
        frameon=False,
        handletextpad=0.3,
        columnspacing=0.8,
    )
    if title:
        ax.set_title(title)
    if note:
        fig.suptitle(note, fontsize=5.5, color="0.3")
    return fig


def dataset_labels(
    qd_table: pd.DataFrame, labels: Mapping[str, str] | None = None, *, sep: str = "\n"
) -> dict[str, str]:
    """Dataset id -> ``"<label><sep>n = C configs × Q questions"`` for figure rows and titles.

    ``labels`` maps ids to human labels (ids without one show the id); Q is the most questions
    any configuration of the dataset was measured on (``n_questions``).

    Examples
    --------
    >>> qd = pd.DataFrame({"dataset": ["a", "a"], "n_questions": [20, 19]})
    >>> dataset_labels(qd, {"a": "GSM8K"}, sep="; ")
    {'a': 'GSM8K; n = 2 configs × 20 questions'}
    """
    labels = labels or {}
    out = {}
    for ds, g in qd_table.groupby("dataset", sort=True):
        nq = f" × {int(g['n_questions'].max())} questions" if "n_questions" in g.columns else ""
        out[str(ds)] = f"{labels.get(str(ds), ds)}{sep}n = {len(g)} configs{nq}"
    return out


def settings_note(qd_table: pd.DataFrame, *, ci: str) -> str:
    """One line of what every figure must state: aggregator, proposers per configuration and
    interval method (:data:`~qdanalysis.analysis.regression.CI_METHODS`).

    Examples
    --------
    >>> qd = pd.DataFrame({"aggregator": ["plurality_vote"], "n_proposers": [6]})
    >>> settings_note(qd, ci="cluster")
    'aggregator: plurality_vote; 6 proposers per configuration; 95% CI: question-clustered (CR1)'
    """
    from .regression import CI_METHODS

    aggs = ", ".join(sorted(map(str, qd_table["aggregator"].unique())))
    props = "/".join(str(int(k)) for k in sorted(qd_table["n_proposers"].unique()))
    return f"aggregator: {aggs}; {props} proposers per configuration; 95% CI: {CI_METHODS[ci]}"


def plot_qd_scatter(
    qd_table: pd.DataFrame,
    *,
    x: str = "quality",
    y: str = "diversity",
    hue: str = "performance",
    style: str | None = "aggregator",
    cmap: str = "viridis",
    colorbar: bool = True,
    ax: Any = None,
) -> Any:
    """Scatter of configurations: ``x`` against ``y``, coloured by ``hue`` (the paper's Fig. 2).

    Parameters
    ----------
    style
        Column whose values get one marker each, with a legend, when it holds more than one
        value (by default the aggregator: a run's LLM aggregation and its plurality-vote baseline
        over the same slots share q and d, and would otherwise hide each other); ``None``: one
        marker.

    Returns
    -------
    matplotlib.axes.Axes
        One point per configuration; a colourbar labelled with ``hue`` when ``colorbar``.
    """
    import matplotlib.colors as mcolors

    ax = _ax(ax)
    for c in (x, y, hue):
        if c not in qd_table.columns:
            raise ConfigError(
                f"plot_qd_scatter: expected column {c!r}; got {list(qd_table.columns)}."
            )
    split = style is not None and style in qd_table.columns and qd_table[style].nunique() > 1
    groups = list(qd_table.groupby(style, sort=True)) if split else [(None, qd_table)]
    norm = mcolors.Normalize(vmin=float(qd_table[hue].min()), vmax=float(qd_table[hue].max()))
    for i, (name, g) in enumerate(groups):
        sc = ax.scatter(
            g[x],
            g[y],
            c=g[hue],
            cmap=cmap,
            norm=norm,
            marker=MARKERS[i % len(MARKERS)],
            # Earlier groups larger, so a point drawn over another one leaves it visible.
            s=max(36.0 / (1 + i), 6.0) if split else 9,
            linewidths=0.2,
            edgecolors="0.2",
            label=None if name is None else str(name),
        )
    if split:
        _marker_legend(ax, [str(n) for n, _ in groups], title=str(style))
    ax.set_xlabel(f"{x} (%)" if x in ("quality", "quality_model") else x)
    ax.set_ylabel(f"{y} (Vendi Score)" if y == "diversity" else y)
    if colorbar:
        cb = ax.figure.colorbar(sc, ax=ax, pad=0.02)
        cb.set_label(f"{hue} (%)" if hue == "performance" else hue)
        cb.outline.set_linewidth(0.4)
    return ax


def _marker_legend(ax: Any, names: Sequence[str], *, title: str) -> None:
    """Legend of marker shapes only (grey: colour is the colourbar's)."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], mfc="0.6", mec="0.2", mew=0.3)
        for i in range(len(names))
    ]
    ax.legend(
        handles, names, title=title, fontsize="x-small", title_fontsize="x-small", frameon=False
    )


def qd_scatter_figure(
    qd_table: pd.DataFrame,
    *,
    width: str | float = "double",
    titles: Mapping[str, str] | None = None,
    note: str | None = None,
) -> Any:
    """One :func:`plot_qd_scatter` panel per dataset, side by side (up to 3 per row), titled
    by ``titles`` (e.g. :func:`dataset_labels`; default the ids); ``note`` above the panels."""
    import matplotlib.pyplot as plt

    w = COLUMN_WIDTHS[width] if isinstance(width, str) else float(width)
    ds = sorted(qd_table["dataset"].unique())
    ncol = min(3, len(ds))
    nrow = int(np.ceil(len(ds) / ncol))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(w, 2.2 * nrow), squeeze=False, layout="constrained"
    )
    for a, d in zip(axes.ravel(), ds, strict=False):
        plot_qd_scatter(qd_table[qd_table["dataset"] == d], ax=a)
        a.set_title((titles or {}).get(d, d))
    for a in axes.ravel()[len(ds) :]:
        a.set_visible(False)
    if note:
        fig.suptitle(note, fontsize=6, color="0.3")
    return fig


#: The Okabe–Ito palette (colour-blind safe), black last.
OKABE_ITO = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
FOREST_TERMS = {
    "quality_z": "α (quality)",
    "diversity_z": "β (diversity)",
    "quality_z - diversity_z": "α − β",
}


def _width(width: str | float) -> float:
    if isinstance(width, str):
        if width not in COLUMN_WIDTHS:
            raise ConfigError(f"width: expected 'single', 'double' or inches; got {width!r}.")
        return COLUMN_WIDTHS[width]
    return float(width)


def plot_forest(
    table: pd.DataFrame,
    *,
    term: str = "quality_z",
    group: str = "dataset",
    variant: str = "method",
    variant_order: Sequence[str] | None = None,
    group_labels: Mapping[str, str] | None = None,
    ax: Any = None,
) -> Any:
    """Forest plot of one term: rows are groups, variants (estimators, measures) side by side.

    Parameters
    ----------
    table
        Long table with ``<group>, <variant>, term, estimate, ci_low, ci_high`` (e.g.
        :func:`qdanalysis.analysis.uncertainty.uncertainty_table`).
    term
        The term drawn (``quality_z``, ``diversity_z`` or ``quality_z - diversity_z``).
    group, variant
        Row-block and within-block columns; each variant gets an Okabe–Ito colour and marker.
    variant_order
        Variants top to bottom within a block (default: order of appearance).
    group_labels
        Row labels per group (default: the group values).
    ax
        Axes (default: current).

    Returns
    -------
    matplotlib.axes.Axes
        One marker with a horizontal CI bar per (group, variant); a dashed line at zero.
    """
    ax = _ax(ax)
    need = {group, variant, "term", "estimate", "ci_low", "ci_high"}
    if not need <= set(table.columns):
        raise ConfigError(
            f"plot_forest: expected columns {sorted(need)}; got {list(table.columns)}."
        )
    t = table[table["term"] == term]
    groups = list(dict.fromkeys(t[group].tolist()))
    variants = list(variant_order or dict.fromkeys(t[variant].tolist()))
    nv = len(variants)
    offsets = np.linspace(0.3, -0.3, nv) if nv > 1 else np.zeros(1)
    for vi, v in enumerate(variants):
        sub = t[t[variant] == v]
        ys, xs, lo, hi = [], [], [], []
        for gi, g in enumerate(groups):
            r = sub[sub[group] == g]
            if r.empty:
                continue
            ys.append(len(groups) - 1 - gi + offsets[vi])
            xs.append(float(r["estimate"].iloc[0]))
            lo.append(float(r["ci_low"].iloc[0]))
            hi.append(float(r["ci_high"].iloc[0]))
        if not ys:
            continue
        x = np.asarray(xs)
        color = OKABE_ITO[vi % len(OKABE_ITO)]
        ax.errorbar(
            x,
            ys,
            xerr=[x - np.asarray(lo), np.asarray(hi) - x],
            fmt=MARKERS[vi % len(MARKERS)],
            color=color,
            ms=3.5,
            capsize=1.5,
            lw=0.9,
            label=str(v),
        )
    ax.axvline(0, color="0.4", lw=0.6, ls="--")
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([(group_labels or {}).get(g, g) for g in groups][::-1])
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_title(FOREST_TERMS.get(term, term))
    return ax


def forest_figure(
    table: pd.DataFrame,
    *,
    terms: Sequence[str] = ("quality_z", "diversity_z", "quality_z - diversity_z"),
    group: str = "dataset",
    variant: str = "method",
    variant_order: Sequence[str] | None = None,
    width: str | float = "double",
    xlabel: str = "accuracy points per SD (95% CI)",
    group_labels: Mapping[str, str] | None = None,
    note: str | None = None,
) -> Any:
    """One :func:`plot_forest` panel per term, sharing rows and a legend below; rows labelled
    by ``group_labels``, ``note`` above the panels."""
    import matplotlib.pyplot as plt

    n_groups = table[group].nunique()
    fig, axes = plt.subplots(
        1,
        len(terms),
        figsize=(_width(width), 0.8 + 0.42 * n_groups * max(1, table[variant].nunique() / 3)),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    opts: dict[str, Any] = {"group": group, "variant": variant, "variant_order": variant_order}
    for a, term in zip(axes[0], terms, strict=True):
        plot_forest(table, term=term, group_labels=group_labels, ax=a, **opts)
        a.set_xlabel(xlabel if a is axes[0][len(terms) // 2] else "")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=min(len(labels), 4),
        frameon=False,
        handletextpad=0.3,
        columnspacing=1.0,
    )
    if note:
        fig.suptitle(note, fontsize=6, color="0.3")
    return fig


def plot_residuals(residuals: pd.DataFrame, *, dataset: str | None = None, ax: Any = None) -> Any:
    """Residuals against fitted values (one dataset, or all in Okabe–Ito colours).

    Parameters
    ----------
    residuals
        :func:`qdanalysis.analysis.uncertainty.residual_frame` output (``dataset, fitted,
        residual``).
    dataset
        Draw only this dataset.
    ax
        Axes (default: current).

    Returns
    -------
    matplotlib.axes.Axes
        One point per configuration, a line at zero.
    """
    ax = _ax(ax)
    r = residuals if dataset is None else residuals[residuals["dataset"] == dataset]
    for i, (ds, g) in enumerate(r.groupby("dataset", sort=True)):
        ax.scatter(
            g["fitted"],
            g["residual"],
            s=6,
            color=OKABE_ITO[i % len(OKABE_ITO)],
            marker=MARKERS[i % len(MARKERS)],
            linewidths=0,
            alpha=0.8,
            label=str(ds),
        )
    ax.axhline(0, color="0.4", lw=0.6, ls="--")
    ax.set_xlabel("fitted performance (%)")
    ax.set_ylabel("residual (points)")
    return ax


def plot_scaling(
    curve: pd.DataFrame,
    *,
    ax: Any = None,
    x: str = "n_samples",
    y: str = "accuracy",
    hue: str = "method",
) -> Any:
    """Accuracy against the number of samples, one line per method (Self-MoA-Seq scaling).

    Parameters
    ----------
    curve
        e.g. :func:`qdanalysis.analysis.methods.vote_scaling_curve` output; a ``std_error`` column
        adds ±1 SE bands.
    ax
        Axes (default: current).
    x, y, hue
        Columns for the axes and the lines.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _ax(ax)
    for i, (name, g) in enumerate(curve.groupby(hue, sort=True)):
        g = g.sort_values(x)
        color = OKABE_ITO[i % len(OKABE_ITO)]
        ax.plot(g[x], g[y], marker=MARKERS[i % len(MARKERS)], ms=3, color=color, label=str(name))
        if "std_error" in g.columns and g["std_error"].notna().any():
            ax.fill_between(
                g[x], g[y] - g["std_error"], g[y] + g["std_error"], color=color, alpha=0.15, lw=0
            )
    ax.set_xlabel("samples aggregated" if x == "n_samples" else x)
    ax.set_ylabel("accuracy (%)" if y == "accuracy" else y)
    return ax


def figure(*, width: str | float = "single", height: float = 2.2, ncols: int = 1) -> Any:
    """An empty constrained-layout figure at a column width: ``(fig, axes)``."""
    import matplotlib.pyplot as plt

    return plt.subplots(
        1, ncols, figsize=(_width(width), height), squeeze=False, layout="constrained"
    )
