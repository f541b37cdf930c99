"""Hostile outputs files: every reader and the fit CLI give one clear error and write nothing."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from hostile_cases import ACCEPTED, CASES, Hostile
from rel_helpers import jsonl_bytes, listing, row

from qdanalysis.cli import fit
from qdanalysis.errors import DataError, DataWarning
from qdanalysis.outputs import load_outputs


def _check_message(exc: DataError, case: Hostile, path: Path) -> None:
    msg = str(exc)
    assert exc.path == str(path), msg
    assert str(path) in msg
    assert exc.line == case.line, msg
    assert exc.column == case.column, msg
    if case.line is not None:
        assert f"line {case.line}" in msg
    if case.column is not None:
        assert f"column {case.column!r}" in msg
    assert case.says in msg, msg
    assert "\n" not in msg, "one line"
    # The template: what was expected, and a fix (a sentence after the last '.').
    assert "expected" in msg or "could not" in msg, msg
    assert re.search(r"\.\s+[A-Z`].*\.$", msg), f"no fix sentence: {msg}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_loader_rejects_hostile_file(case: Hostile, write_file) -> None:
    path = write_file(case.name, case.data)
    with pytest.raises(DataError) as info:
        load_outputs(path)
    _check_message(info.value, case, path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fit_cli_hostile_file_one_error_line_no_output(
    case: Hostile, write_file, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file(case.name, case.data)
    out_dir = tmp_path / "out"
    cache_dir = tmp_path / "cache"
    code = fit.main(
        ["--outputs", str(path), "--out-dir", str(out_dir), "--cache-dir", str(cache_dir)]
    )
    captured = capsys.readouterr()
    assert code == 1
    err = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(err) == 1, captured.err
    assert err[0].startswith("error: " + str(path)), err[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert listing(out_dir) == []
    assert listing(cache_dir) == [], "the cache is not touched before the input is valid"


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_loader_accepts_odd_but_valid_file(name: str, write_file) -> None:
    df = load_outputs(write_file(name, ACCEPTED[name]))
    assert len(df) >= 1
    assert set(df["dataset"]) == {"toy"}
    assert df["correct"].between(0, 1).all()
    assert df["sample_index"].dtype == "int64"


def test_bom_and_crlf_do_not_leak_into_values(write_file) -> None:
    for name in ("bom.jsonl", "crlf.jsonl", "bom.csv", "crlf.csv"):
        df = load_outputs(write_file(name, ACCEPTED[name]))
        assert list(df.columns[:1]) == ["dataset"], name
        assert not any("\r" in str(v) or "\ufeff" in str(v) for v in df.iloc[0]), name


def test_csv_keeps_texts_that_look_like_nulls(write_file) -> None:
    # pandas' default CSV reader turns "NA", "None", "null", "nan" into nulls: a real answer.
    data = (
        b"dataset,question_id,model,sample_index,output,answer_key,correct\n"
        b"toy,q1,m1,0,None,NA,1\ntoy,q1,m1,1,null,nan,0\ntoy,q1,m1,2,,,0\n"
    )
    with pytest.warns(DataWarning, match="1 of 3 outputs are empty"):
        df = load_outputs(write_file("o.csv", data))
    assert df["output"].tolist() == ["None", "null", ""]
    assert df["answer_key"].tolist() == ["NA", "nan", None]


def test_all_outputs_null_are_empty_texts_with_a_warning(write_file) -> None:
    data = jsonl_bytes([row(output=None), row(sample_index=1, output=...)])
    with pytest.warns(DataWarning, match="2 of 2 outputs are empty"):
        df = load_outputs(write_file("o.jsonl", data))
    assert df["output"].tolist() == ["", ""]


def test_extra_columns_pass_through(write_file) -> None:
    df = load_outputs(write_file("o.jsonl", ACCEPTED["extra-columns.jsonl"]))
    assert df.at[0, "judge"] == {"a": [1, 2]}
    assert df.at[0, "latency_s"] == 0.5


def test_huge_single_text_loads(write_file) -> None:
    big = "word " * 1_000_000  # 5 MB in one output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = load_outputs(write_file("o.jsonl", jsonl_bytes([row(output=big)])))
    assert len(df.at[0, "output"]) == len(big)


def test_error_names_the_right_file_among_several(write_file) -> None:
    good = write_file("a.jsonl", jsonl_bytes([row()]))
    bad = write_file("b.jsonl", jsonl_bytes([row(sample_index=1), row(sample_index=2, correct=3)]))
    with pytest.raises(DataError) as info:
        load_outputs([good, bad])
    assert info.value.path == str(bad)
    assert info.value.line == 2


def test_duplicate_across_files_names_both(write_file) -> None:
    a = write_file("a.jsonl", jsonl_bytes([row()]))
    b = write_file("b.jsonl", jsonl_bytes([row(sample_index=1), row(answer_key="5")]))
    with pytest.raises(DataError) as info:
        load_outputs([a, b])
    assert info.value.path == str(b)
    assert info.value.line == 2
    assert f"{a} line 1 with another 'answer_key'" in str(info.value)


def test_identical_copy_across_files_is_one_output(write_file) -> None:
    a = write_file("a.jsonl", jsonl_bytes([row()]))
    b = write_file("b.jsonl", jsonl_bytes([row(sample_index=1), row()]))
    with pytest.warns(DataWarning, match=f"1 of 3 rows repeat .*{b} line 2 repeats {a} line 1"):
        df = load_outputs([a, b])
    assert df["sample_index"].tolist() == [0, 1]


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_outputs(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found none"):
        load_outputs(tmp_path / "empty")
