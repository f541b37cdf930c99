"""Property-based tests over generated outputs tables (hypothesis)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qdanalysis.configs import generate_configs
from qdanalysis.errors import ConfigError, DataError
from qdanalysis.outputs import add_proposer_column, load_outputs, validate_outputs
from qdanalysis.votes import plurality_vote_scores

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
ident = st.text("abcxyz019-_/", min_size=1, max_size=8).filter(lambda s: s.strip())


@st.composite
def outputs_tables(draw) -> list[dict]:
    datasets = draw(st.lists(ident, min_size=1, max_size=2, unique=True))
    models = draw(st.lists(ident, min_size=1, max_size=3, unique=True))
    rows = []
    for ds in datasets:
        for q in range(draw(st.integers(1, 3))):
            for m in models:
                for s in range(draw(st.integers(1, 3))):
                    key = draw(st.one_of(st.none(), st.sampled_from("ABC")))
                    rows.append(
                        {
                            "dataset": ds,
                            "question_id": f"q{q}",
                            "model": m,
                            "sample_index": s,
                            "output": draw(text.filter(lambda t: t.strip())),
                            "answer_key": key,
                            "correct": float(key == "A") if key else 0.0,
                        }
                    )
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@SETTINGS
@given(rows=outputs_tables())
def test_valid_tables_validate_and_round_trip(rows, tmp_path: Path) -> None:
    df = load_outputs(_write(tmp_path / "a.jsonl", rows))
    assert len(df) == len(rows)
    again = validate_outputs(df)
    pd.testing.assert_frame_equal(df, again)
    back = load_outputs(_write(tmp_path / "b.jsonl", df.to_dict("records")))
    pd.testing.assert_frame_equal(df, back)
    assert df["output"].tolist() == [r["output"] for r in rows]


@SETTINGS
@given(rows=outputs_tables(), n=st.integers(1, 3), size=st.integers(1, 12), seed=st.integers(0, 9))
def test_configurations_unique_deterministic_and_sized(rows, n, size, seed) -> None:
    df = add_proposer_column(validate_outputs(pd.DataFrame(rows)))
    g = df[df["dataset"] == df["dataset"].iloc[0]]
    if g.groupby("proposer")["sample_index"].nunique().sum() < n:
        with pytest.raises(ConfigError, match="no configuration"):  # the one allowed refusal
            generate_configs(g, n_proposers=n, max_configs=size, seed=seed)
        return
    a = generate_configs(g, n_proposers=n, max_configs=size, seed=seed)
    b = generate_configs(g, n_proposers=n, max_configs=size, seed=seed)
    ids = [c.config_id for c in a]
    assert ids == [c.config_id for c in b]
    assert len(set(ids)) == len(ids)
    assert 1 <= len(a) <= size
    assert all(len(c.proposers) == n for c in a)


def _brute_vote(keys: list[int], correct: list[float]) -> float:
    """Enumerate every tie-break: the expected score of a uniform pick among the top keys."""
    votes = {k: keys.count(k) for k in keys if k >= 0}
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [k for k, v in votes.items() if v == top]
    return sum(correct[keys.index(k)] for k in winners) / len(winners)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.lists(st.lists(st.integers(-1, 3), min_size=n, max_size=n), min_size=1)
    ),
    st.lists(st.floats(0, 1), min_size=5, max_size=5),
)
def test_plurality_vote_matches_enumeration(keys, score_of_key) -> None:
    correct = [[0.0 if k < 0 else score_of_key[k] for k in r] for r in keys]
    got = plurality_vote_scores(np.array(keys), np.array(correct))
    assert ((got >= 0) & (got <= 1)).all()
    want = [_brute_vote(k, c) for k, c in zip(keys, correct, strict=True)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_plurality_vote_all_ties_enumerated() -> None:
    for keys in itertools.product([-1, 0, 1, 2], repeat=4):
        c = [0.0 if k < 0 else [1.0, 0.0, 0.5][k] for k in keys]
        got = plurality_vote_scores(np.array([keys]), np.array([c]))[0]
        assert got == pytest.approx(_brute_vote(list(keys), c))


SCHEMA_BAD = {
    "correct": [-0.5, 1.5, "yes", None, float("inf"), [1]],
    "sample_index": [-1, 0.5, "0", None, True, 2**60],
    "question_id": [None, [1], {"a": 1}, "  "],
    "model": [None, "", 3.5],
    "dataset": [None, ""],
    "output": [17, ["x"]],
    "temperature": ["hot", float("-inf")],
}


@SETTINGS
@given(
    rows=outputs_tables(),
    col=st.sampled_from(sorted(SCHEMA_BAD)),
    data=st.data(),
)
def test_one_bad_cell_is_named_by_line_and_column(rows, col, data, tmp_path: Path) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    bad = data.draw(st.sampled_from(SCHEMA_BAD[col]))
    rows = [dict(r) for r in rows]
    rows[i][col] = bad
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_outputs(path)
    assert info.value.path == str(path)
    assert info.value.line == i + 1, str(info.value)
    assert info.value.column == col, str(info.value)


@SETTINGS
@given(rows=outputs_tables(), n=st.integers(1, 2))
def test_quality_equals_direct_recomputation(rows, n) -> None:
    from qdanalysis.analysis.pairs import slot_index

    df = add_proposer_column(validate_outputs(pd.DataFrame(rows)))
    g = df[df["dataset"] == df["dataset"].iloc[0]].reset_index(drop=True)
    if g.groupby("proposer")["sample_index"].nunique().sum() < n:
        return  # too few samples for n slots
    configs = generate_configs(g, n_proposers=n, max_configs=20, seed=0)
    idx = slot_index(g, configs)
    lookup = {(r.question_id, r.proposer, r.sample_index): r.correct for r in g.itertuples()}
    corr = g["correct"].to_numpy()
    for c, cfg in enumerate(configs):
        for qi, q in enumerate(idx.question_ids):
            direct = [lookup.get((q, s.model, s.sample_index)) for s in cfg.proposers]
            if any(v is None for v in direct):
                assert not idx.valid[c, qi]
                continue
            assert idx.valid[c, qi]
            assert corr[idx.rows[c, qi]].mean() == pytest.approx(np.mean(direct), abs=1e-12)
