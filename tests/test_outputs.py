from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.errors import DataError, DataWarning
from qdanalysis.outputs import (
    OUTPUTS_SCHEMA,
    add_proposer_column,
    find_output_files,
    load_outputs,
    proposer_rows,
    validate_outputs,
)

ROW = {
    "dataset": "d",
    "question_id": "q1",
    "question": "2+2?",
    "model": "m",
    "sample_index": 0,
    "output": "4",
    "answer": "4",
    "answer_key": "4",
    "correct": 1,
    "reference": "4",
    "temperature": 0.7,
}


def write_jsonl(path: Path, rows: list[dict], *, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for i, text in (raw_lines or {}).items():
        lines[i] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(n: int = 3) -> list[dict]:
    return [{**ROW, "sample_index": i, "correct": i % 2} for i in range(n)]


def test_shipped_data_loads_with_schema(shipped_outputs):
    df = shipped_outputs
    assert len(df) == 3000 + 1791 + 1800
    assert set(OUTPUTS_SCHEMA) <= set(df.columns)
    assert "prompt_variant" in df.columns  # extra columns are kept
    assert df["sample_index"].dtype == "int64"
    assert df["correct"].between(0, 1).all()
    assert df.groupby("dataset").size().to_dict() == {
        "cruxeval-i/codellama-7b-samples": 3000,
        "rereading/csqa": 1800,
        "rereading/gsm8k": 1791,
    }


def test_jsonl_gz_parquet_csv_read_the_same(tmp_path, outputs_small):
    src = outputs_small.drop(columns=["prompt_variant"])
    jl = tmp_path / "a.jsonl.gz"
    with gzip.open(jl, "wt", encoding="utf-8") as fh:
        for r in src.to_dict("records"):
            fh.write(json.dumps(r) + "\n")
    src.to_parquet(tmp_path / "a.parquet")
    src.to_csv(tmp_path / "a.csv", index=False)
    a = load_outputs(jl)
    for other in ("a.parquet", "a.csv"):
        b = load_outputs(tmp_path / other)
        pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False)


def test_malformed_json_names_file_and_line(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", rows(4), raw_lines={2: '{"dataset": "d", '})
    with pytest.raises(DataError) as exc:
        load_outputs(p)
    assert exc.value.line == 3
    assert str(p) in str(exc.value)
    assert "line 3" in str(exc.value)
    assert "malformed JSON" in str(exc.value)


def test_missing_column_is_named(tmp_path):
    p = write_jsonl(
        tmp_path / "m.jsonl", [{k: v for k, v in r.items() if k != "correct"} for r in rows()]
    )
    with pytest.raises(DataError, match=r"missing \['correct'\]"):
        load_outputs(p)


def test_correct_outside_unit_interval_names_line_and_column(tmp_path):
    bad = rows(3)
    bad[1]["correct"] = 2
    p = write_jsonl(tmp_path / "c.jsonl", bad)
    with pytest.raises(DataError) as exc:
        load_outputs(p)
    assert (exc.value.line, exc.value.column) == (2, "correct")
    assert "[0, 1]" in str(exc.value)


def test_mistyped_column_is_named(tmp_path):
    bad = rows(3)
    bad[2]["sample_index"] = "first"
    p = write_jsonl(tmp_path / "t.jsonl", bad)
    with pytest.raises(DataError) as exc:
        load_outputs(p)
    assert (exc.value.line, exc.value.column) == (3, "sample_index")


def test_duplicate_rows_are_rejected_with_both_lines(tmp_path):
    dup = [*rows(3), rows(3)[0]]
    p = write_jsonl(tmp_path / "d.jsonl", dup)
    with pytest.raises(DataError) as exc:
        load_outputs(p)
    assert exc.value.line == 4
    assert "line 1" in str(exc.value)


def test_empty_file_is_rejected(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_outputs(p)


def test_one_question_text_per_id(tmp_path):
    bad = rows(2)
    bad[1]["question"] = "something else"
    with pytest.raises(DataError, match="one question text"):
        load_outputs(write_jsonl(tmp_path / "q.jsonl", bad))


def test_empty_outputs_warn_and_are_kept(tmp_path):
    r = rows(2)
    r[0]["output"] = ""
    with pytest.warns(DataWarning, match="empty"):
        df = load_outputs(write_jsonl(tmp_path / "w.jsonl", r))
    assert len(df) == 2


def test_dataframe_errors_name_the_row():
    df = pd.DataFrame(rows(3)).astype({"correct": float})
    df.loc[2, "correct"] = -0.5
    with pytest.raises(DataError, match="row 2"):
        validate_outputs(df)


def test_directory_without_outputs_is_an_error(tmp_path):
    with pytest.raises(DataError, match="found none"):
        find_output_files(tmp_path)


def test_proposer_rows_exclude_aggregator_rows():
    df = pd.DataFrame(rows(2))
    df["role"] = ["proposer", "aggregator"]
    df["layer"] = [0, 1]
    assert proposer_rows(df)["role"].tolist() == ["proposer"]


def test_proposer_key_combines_columns(outputs_small):
    out = add_proposer_column(outputs_small, ("model", "prompt_variant"))
    assert out["proposer"].nunique() == 12
    assert "gpt-3.5-turbo|cot" in set(out["proposer"])
    with pytest.raises(DataError, match="missing"):
        add_proposer_column(outputs_small, ("model", "no_such_column"))
