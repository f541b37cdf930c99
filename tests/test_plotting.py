"""Plots checked on their data (positions, markers, colour scale), never pixels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from qdanalysis.analysis.plotting import plot_qd_scatter


def _table(aggregators: list[str]) -> pd.DataFrame:
    n = len(aggregators)
    return pd.DataFrame(
        {
            "quality": np.linspace(10, 20, n),
            "diversity": np.linspace(1, 4, n),
            "performance": np.linspace(5, 15, n),
            "aggregator": aggregators,
        }
    )


def test_scatter_draws_one_point_per_configuration_at_its_q_and_d() -> None:
    t = _table(["plurality_vote"] * 4)
    fig, ax = plt.subplots()
    plot_qd_scatter(t, ax=ax)
    (pts,) = ax.collections
    np.testing.assert_allclose(pts.get_offsets(), t[["quality", "diversity"]].to_numpy())
    np.testing.assert_allclose(pts.get_array(), t["performance"])
    assert ax.get_legend() is None
    plt.close(fig)


def test_configurations_of_other_aggregators_on_the_same_slots_stay_visible() -> None:
    # A run's LLM aggregation and its plurality baseline over the same slots share q and d.
    t = _table(["llm:m", "plurality_vote", "llm:m", "plurality_vote"])
    t.loc[1, ["quality", "diversity"]] = t.loc[0, ["quality", "diversity"]].to_numpy()
    fig, ax = plt.subplots()
    plot_qd_scatter(t, ax=ax)
    groups = {tuple(map(tuple, c.get_offsets())): c for c in ax.collections}
    assert len(ax.collections) == 2
    paths = {c.get_paths()[0].vertices.tobytes() for c in ax.collections}
    assert len(paths) == 2  # two marker shapes
    assert sum(len(k) for k in groups) == 4
    labels = [txt.get_text() for txt in ax.get_legend().get_texts()]
    assert labels == ["llm:m", "plurality_vote"]
    # one colour scale across the groups
    assert {c.norm.vmin for c in ax.collections} == {5.0}
    assert {c.norm.vmax for c in ax.collections} == {15.0}
    plt.close(fig)


def test_scatter_names_a_missing_column() -> None:
    with pytest.raises(ValueError, match="'performance'"):
        plot_qd_scatter(_table(["a"]).drop(columns="performance"))
