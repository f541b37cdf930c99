"""Published numbers of arXiv 2502.00674 and the checks that can be recomputed from them.

The paper's tables ship as CSV in ``data/paper/`` (see its README). This module loads them and
recomputes what they allow: the proxy quality of each Table 3 configuration (mean over the six
slots of the individual models' accuracies) and its correlation with the MoA accuracy, and the
t-statistics implied by Table 4's coefficients and "±".

Neighbours: :mod:`qdanalysis.analysis.plotting` draws Table 4 beside the toolkit's fits
(:func:`table4`); the notebook ``01_paper_tables`` walks through these checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__ = [
    "PAPER_DATASETS",
    "PAPER_ID",
    "PAPER_MATCH",
    "PAPER_TABLES",
    "TABLE4",
    "TASK_BEST",
    "default_paper_dir",
    "load_paper_table",
    "paper_match",
    "paper_rows",
    "parse_multiset",
    "proxy_correlations",
    "proxy_quality",
    "table4",
    "table4_statistics",
]

PAPER_ID = "arXiv:2502.00674 (Li, Lin, Xia, Jin 2025), Table 4"
PAPER_DATASETS = ("MMLU", "CRUX", "MATH")
#: The task's best single model (the paper's "TaskBest").
TASK_BEST = {"MMLU": "i", "CRUX": "d", "MATH": "m"}
#: File stem per table name accepted by :func:`load_paper_table`.
PAPER_TABLES = {"table3": "table3", "table4": "table4", "table5": "table5", "table7": "table7"}

#: Table 4: t = α·z(q) + β·z(d) + γ per dataset; "±" is one value shared by α and β (most likely
#: the standard error); p < 0.001 for both everywhere.
TABLE4: dict[str, dict[str, float]] = {
    "MMLU": {"alpha": 2.558, "beta": 1.841, "pm": 0.176, "r2": 0.771},
    "CRUX": {"alpha": 4.548, "beta": 1.421, "pm": 0.459, "r2": 0.685},
    "MATH": {"alpha": 4.719, "beta": 2.839, "pm": 0.416, "r2": 0.760},
}


def table4() -> pd.DataFrame:
    """Table 4 as a tidy frame: ``dataset, term (quality_z|diversity_z), estimate, pm, r2``."""
    rows = []
    for ds, v in TABLE4.items():
        for term, key in (("quality_z", "alpha"), ("diversity_z", "beta")):
            rows.append(
                {"dataset": ds, "term": term, "estimate": v[key], "pm": v["pm"], "r2": v["r2"]}
            )
    return pd.DataFrame(rows)


#: Paper dataset -> lower-case fragments of dataset ids that are the same benchmark.
PAPER_MATCH = {"MMLU": ("mmlu",), "CRUX": ("cruxeval", "crux"), "MATH": ("math",)}


def paper_match(dataset: str) -> str | None:
    """The paper's dataset (Table 4) that is the same benchmark as ``dataset``, or None.

    Examples
    --------
    >>> paper_match("cruxeval-i/codellama-7b-samples"), paper_match("rereading/gsm8k")
    ('CRUX', None)
    """
    low = str(dataset).lower()
    for name, keys in PAPER_MATCH.items():
        if any(k in low for k in keys):
            return name
    return None


def paper_rows(datasets: Sequence[str]) -> pd.DataFrame:
    """Table 4's rows paired with the datasets they match (:func:`paper_match`).

    Parameters
    ----------
    datasets
        Dataset ids of an analysis.

    Returns
    -------
    pandas.DataFrame
        :func:`table4`'s columns with ``dataset`` the matching id of ``datasets``, plus
        ``paper_dataset`` and ``name`` (e.g. ``"CRUX (paper, Table 4)"``); datasets without a
        match get no rows, and paper rows without a matching dataset are left out.

    Examples
    --------
    >>> rows = paper_rows(["cruxeval-i/x", "rereading/gsm8k"])
    >>> rows[["dataset", "paper_dataset", "term"]].values.tolist()
    [['cruxeval-i/x', 'CRUX', 'quality_z'], ['cruxeval-i/x', 'CRUX', 'diversity_z']]
    """
    t4 = table4()
    out = []
    for ds in datasets:
        name = paper_match(ds)
        if name is None:
            continue
        r = t4[t4["dataset"] == name].copy()
        r["paper_dataset"] = name
        r["name"] = f"{name} (paper, Table 4)"
        r["dataset"] = ds
        out.append(r)
    cols = [*t4.columns, "paper_dataset", "name"]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


def default_paper_dir() -> Path:
    """``data/paper`` of the source tree (next to the package), else of the working directory."""
    here = Path(__file__).resolve().parent.parent / "data" / "paper"
    return here if here.is_dir() else Path("data/paper")


def load_paper_table(name: str, *, directory: str | Path | None = None) -> pd.DataFrame:
    """Load one published table from ``data/paper/<name>.csv``.

    Parameters
    ----------
    name
        ``"table3"`` (Tables 3/6/11 merged), ``"table4"``, ``"table5"`` or ``"table7"``.
    directory
        Folder holding the CSVs (default: :func:`default_paper_dir`).

    Returns
    -------
    pandas.DataFrame
        The table as published; column meanings are in ``data/paper/README.md``.

    Examples
    --------
    >>> load_paper_table("table4")["alpha"].tolist()
    [2.558, 4.548, 4.719]
    """
    if name not in PAPER_TABLES:
        raise ConfigError(
            f"load_paper_table: expected one of {sorted(PAPER_TABLES)}; got {name!r}."
        )
    path = Path(directory or default_paper_dir()) / f"{PAPER_TABLES[name]}.csv"
    if not path.is_file():
        raise DataError(
            f"load_paper_table: expected the file {path.name} in {path.parent.name}/; it is "
            "missing. Pass directory= pointing at the repository's data/paper.",
            path=path.name,
        )
    return pd.read_csv(path, dtype={"proposers": str, "aggregator": str})


def parse_multiset(proposers: str, *, dataset: str | None = None) -> Counter[str]:
    """Letters of a proposer multiset: ``"iimmdd"`` → ``{i: 2, m: 2, d: 2}``.

    ``"6xTaskBest"`` (six samples of the task's best model) needs ``dataset`` to resolve it
    through :data:`TASK_BEST`.

    Examples
    --------
    >>> dict(parse_multiset("iimmdd"))
    {'i': 2, 'm': 2, 'd': 2}
    >>> dict(parse_multiset("6xTaskBest", dataset="CRUX"))
    {'d': 6}
    """
    s = str(proposers).strip()
    if s.endswith("xTaskBest"):
        if dataset not in TASK_BEST:
            raise ConfigError(
                f"parse_multiset: {s!r} needs dataset= one of {sorted(TASK_BEST)}; got {dataset!r}."
            )
        return Counter({TASK_BEST[dataset]: int(s[: -len("xTaskBest")])})
    if not s.isalpha():
        raise DataError(
            f"parse_multiset: expected model letters such as 'iimmdd'; got {proposers!r}."
        )
    return Counter(s)


def proxy_quality(table3: pd.DataFrame, dataset: str) -> pd.Series:
    """Proxy quality of every MoA row of Table 3: mean over slots of the models' accuracies.

    Parameters
    ----------
    table3
        :func:`load_paper_table` ``("table3")``.
    dataset
        ``"MMLU"``, ``"CRUX"`` or ``"MATH"``.

    Returns
    -------
    pandas.Series
        Indexed like ``table3``; NaN on the individual-model rows.

    Notes
    -----
    q_proxy = (1/n) Σ_slots acc(model of the slot), with acc from the ``Individual`` rows.
    """
    if dataset not in PAPER_DATASETS:
        raise ConfigError(f"proxy_quality: expected one of {PAPER_DATASETS}; got {dataset!r}.")
    ind = table3[table3["group"] == "Individual"].set_index("proposers")[dataset]
    out = pd.Series(np.nan, index=table3.index, name=f"qproxy_{dataset}")
    for i, row in table3.iterrows():
        if row["group"] == "Individual":
            continue
        ms = parse_multiset(row["proposers"], dataset=dataset)
        n = sum(ms.values())
        out[i] = sum(float(ind[m]) * k for m, k in ms.items()) / n
    return out


def proxy_correlations(table3: pd.DataFrame, *, aggregator: str = "i") -> pd.DataFrame:
    """corr(proxy quality, MoA accuracy) per dataset over the rows with one aggregator.

    With ``aggregator="i"`` these are the 14 rows of Table 3 aggregated by Qwen2-7B-Instruct
    whose proposers are spelled out (13 Mixed-MoA and ``dddddd``); ``6xTaskBest`` rows are
    left out because their proposers differ by task.

    Returns
    -------
    pandas.DataFrame
        ``dataset, n, r, r2``: Pearson correlation and its square.

    Examples
    --------
    >>> proxy_correlations(load_paper_table("table3"))["r"].round(3).tolist()
    [0.817, 0.799, 0.841]
    """
    rows = table3[
        (table3["aggregator"] == aggregator)
        & (table3["group"] != "Individual")
        & ~table3["proposers"].str.contains("TaskBest")
    ]
    out = []
    for ds in PAPER_DATASETS:
        q = proxy_quality(table3, ds).loc[rows.index]
        r = float(np.corrcoef(q, rows[ds].astype(float))[0, 1])
        out.append({"dataset": ds, "n": len(rows), "r": r, "r2": r * r})
    return pd.DataFrame(out)


def table4_statistics() -> pd.DataFrame:
    """t-statistics implied by Table 4 under the two readings of its "±".

    Returns
    -------
    pandas.DataFrame
        ``dataset, term, estimate, pm, t_if_se`` (estimate / pm: "±" is a standard error),
        ``t_if_ci95`` (estimate / (pm / 1.96): "±" is a 95 % CI half-width), ``p_if_se``
        (two-sided normal p-value of ``t_if_se``; the paper's n is unknown, so the normal
        approximation stands in for Student's t).
    """
    from scipy import stats as st

    t = table4()
    t["t_if_se"] = t["estimate"] / t["pm"]
    t["t_if_ci95"] = t["estimate"] / (t["pm"] / 1.96)
    t["p_if_se"] = 2 * st.norm.sf(t["t_if_se"].abs())
    return t[["dataset", "term", "estimate", "pm", "t_if_se", "t_if_ci95", "p_if_se"]]
