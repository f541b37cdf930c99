from __future__ import annotations

import gzip
import json
import re
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


def test_duplicate_keys_with_other_content_are_rejected_with_both_lines(tmp_path):
    dup = [*rows(3), {**rows(3)[0], "output": "5", "correct": 0}]
    p = write_jsonl(tmp_path / "d.jsonl", dup)
    with pytest.raises(DataError) as exc:
        load_outputs(p)
    assert exc.value.line == 4
    assert "line 1" in str(exc.value)
    assert "another 'output'" in str(exc.value)


def test_identical_copies_are_kept_once_with_a_warning(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [*rows(3), rows(3)[0]])
    with pytest.warns(DataWarning, match=r"1 of 4 rows repeat .*d.jsonl line 4 repeats .*line 1"):
        df = load_outputs(p)
    assert df["sample_index"].tolist() == [0, 1, 2]


# -- two run stores compared: their shared proposer rows appear in both ----------------------------

RUN = (
    Path(__file__).resolve().parents[1] / "data" / "runs" / "csqa_smollm2_gemma3" / "outputs.jsonl"
)
#: The configurations of run "a"; run "b" has the others. Both hold every proposer row.
RUN_A = {"cfg-8b1bf747c73d", "cfg-a09e04cd52b9", "cfg-943cd578da60"}


def split_run(tmp_path: Path, edit_b=None) -> tuple[Path, Path]:
    """Two run stores of one proposer pool, as two runs comparing methods leave them."""
    records = [json.loads(line) for line in RUN.read_text(encoding="utf-8").splitlines()]
    a = [r for r in records if r["config_id"] is None or r["config_id"] in RUN_A]
    b = [dict(r) for r in records if r["config_id"] not in RUN_A]
    if edit_b is not None:
        edit_b(b)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return (
        write_jsonl(tmp_path / "a" / "outputs.jsonl", a),
        write_jsonl(tmp_path / "b" / "outputs.jsonl", b),
    )


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    key = ["config_id", "step", "model", "question_id", "sample_index"]
    return df.sort_values(key, na_position="first").reset_index(drop=True)


@pytest.mark.parametrize("how", ["two files", "concatenated"])
def test_two_run_stores_sharing_proposers_load_as_one_run(tmp_path, how):
    with pytest.warns(DataWarning, match="empty"):
        whole = load_outputs(RUN)
    a, b = split_run(tmp_path)
    n_a = len(a.read_text().splitlines())
    if how == "concatenated":
        both = tmp_path / "both.jsonl"
        both.write_bytes(a.read_bytes() + b.read_bytes())
        paths, copy = [both], f"both.jsonl line {n_a + 1} repeats .*both.jsonl line 1\\b"
    else:
        paths, copy = [a, b], "b/outputs.jsonl line 1 repeats .*a/outputs.jsonl line 1\\b"
    with pytest.warns(DataWarning) as record:
        df = load_outputs(paths)
    messages = [str(w.message) for w in record]
    assert any(re.search(f"^180 of 520 rows repeat .*{copy}", m) for m in messages), messages
    assert any(m.startswith("5 of 340 outputs are empty") for m in messages), messages
    assert (df["role"] == "proposer").sum() == 180
    pd.testing.assert_frame_equal(_sorted(df), _sorted(whole[df.columns]))


def test_two_run_directories_give_their_outputs_tables(tmp_path):
    a, b = split_run(tmp_path)
    (a.parent / "configs.jsonl").write_text('{"method": "single"}\n')
    (b.parent / "rows.jsonl").write_text('{"status": "error"}\n')  # a store's log: not read
    assert find_output_files(a.parent) == [a]
    assert find_output_files(b.parent) == [b]
    with pytest.warns(DataWarning):
        assert len(load_outputs([a.parent, b.parent])) == 340


def test_provenance_of_a_shared_sample_may_differ(tmp_path):
    def recall(b):  # run "b" took its proposer samples from a response cache, later
        for r in b:
            if r["role"] == "proposer":
                r.update(cached=True, latency_s=0.01, created_at="2026-11-27T09:00:00+00:00")

    with pytest.warns(DataWarning):
        df = load_outputs(split_run(tmp_path, recall))
    assert len(df) == 340
    assert not df.loc[df["role"] == "proposer", "cached"].any()  # the first copy is kept


@pytest.mark.parametrize("role", ["proposer", "aggregator"])
def test_same_key_other_output_names_both_files(tmp_path, role):
    def resample(b):  # one output of "b" is not the one "a" has under the same key
        r = next(r for r in b if r["role"] == role and r["config_id"] in (None, *RUN_A))
        r["output"] += " (resampled)"

    def share(b):  # for the aggregator case, "b" also ran one of "a"'s configurations
        b.extend(
            json.loads(line)
            for line in RUN.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["config_id"] == "cfg-a09e04cd52b9"
        )
        resample(b)

    a, b = split_run(tmp_path, resample if role == "proposer" else share)
    lines_a = a.read_text().splitlines()
    lines_b = b.read_text().splitlines()
    bad = next(i for i, t in enumerate(lines_b, 1) if "(resampled)" in t)
    good = lines_a.index(lines_b[bad - 1].replace(" (resampled)", "")) + 1
    with pytest.raises(DataError) as exc:
        load_outputs([a, b])
    msg = str(exc.value)
    assert (exc.value.path, exc.value.line) == (str(b), bad)
    assert f"a duplicate of {a} line {good} with another 'output'" in msg
    assert "(resampled)" in msg


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


def test_a_table_with_repeated_index_labels_is_checked_by_row(tmp_path):
    df = pd.DataFrame([*rows(2), {**rows(2)[0], "output": "5"}], index=[0, 0, 1])
    with pytest.raises(DataError, match=r"row 2: .*a duplicate of row 0 with another 'output'"):
        validate_outputs(df)
    with pytest.warns(DataWarning, match="1 of 3 rows repeat"):
        out = validate_outputs(pd.DataFrame([*rows(2), rows(2)[1]], index=[5, 5, 5]))
    assert out.index.tolist() == [0, 1]
