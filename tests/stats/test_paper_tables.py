import numpy as np
import pytest

from qdanalysis.analysis.paper import (
    TABLE4,
    load_paper_table,
    parse_multiset,
    proxy_correlations,
    proxy_quality,
    table4_statistics,
)
from qdanalysis.errors import ConfigError


def test_proxy_correlations_equal_the_paper():
    r = proxy_correlations(load_paper_table("table3")).set_index("dataset")
    assert r.loc[["MMLU", "CRUX", "MATH"], "r"].round(3).tolist() == [0.817, 0.799, 0.841]
    assert r.loc[["MMLU", "CRUX", "MATH"], "r2"].round(3).tolist() == [0.667, 0.638, 0.708]
    assert (r["n"] == 14).all()


def test_proxy_quality_of_iimmdd():
    t = load_paper_table("table3")
    row = t.index[t["proposers"] == "iimmdd"][0]
    got = [round(proxy_quality(t, ds)[row], 2) for ds in ("MMLU", "CRUX", "MATH")]
    assert got == [60.48, 37.88, 59.07]


def test_table3_average_is_the_mean_of_tasks():
    t = load_paper_table("table3")
    assert np.abs(t[["MMLU", "CRUX", "MATH"]].mean(axis=1) - t["Average"]).max() <= 0.007


def test_table3_headline_delta():
    t = load_paper_table("table3")
    self_best = t[(t["aggregator"] == "TaskBest")]["Average"].max()
    mixed_best = t[t["group"] == "Mixed-MoA"]["Average"].max()
    assert round(self_best - mixed_best, 2) == 3.77


def test_table4_csv_matches_constants():
    t = load_paper_table("table4").set_index("dataset")
    for ds, v in TABLE4.items():
        assert t.loc[ds, "alpha"] == v["alpha"]
        assert t.loc[ds, "beta"] == v["beta"]


def test_table4_crux_beta_t_is_3_1():
    s = table4_statistics().set_index(["dataset", "term"])
    assert round(s.loc[("CRUX", "diversity_z"), "t_if_se"], 1) == 3.1
    assert 0.001 < s.loc[("CRUX", "diversity_z"), "p_if_se"] < 0.003


def test_table5_k1_equals_table4_r2():
    t5 = load_paper_table("table5")
    t4 = load_paper_table("table4").set_index("dataset")["r2"]
    k1 = t5[t5["K"] == 1]
    assert (k1["r2"].to_numpy() == t4.loc[k1["dataset"]].to_numpy()).all()


def test_parse_multiset_needs_dataset_for_taskbest():
    with pytest.raises(ConfigError, match="dataset"):
        parse_multiset("6xTaskBest")
