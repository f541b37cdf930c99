import json
from pathlib import Path

import pytest

from qdanalysis.cli.run import main
from qdanalysis.errors import DataError
from qdanalysis.outputs import load_outputs
from qdanalysis.runner.tasks import get_task, load_questions

QUESTIONS = Path(__file__).resolve().parents[2] / "data" / "questions"


def test_shipped_question_files_load():
    for name, task in [
        ("csqa_20", "multiple_choice"),
        ("gsm8k_20", "math"),
        ("cruxeval_o_20", "crux"),
    ]:
        qs = load_questions(QUESTIONS / f"{name}.jsonl")
        assert len(qs) == 20
        assert {q.task for q in qs} == {task}


def test_crux_execution_scorer_agrees_with_reference():
    q = load_questions(QUESTIONS / "cruxeval_o_20.jsonl", limit=1)[0]
    task = get_task("crux", scorer="crux_execute")
    assert task.grade(json.dumps({"answer": q.reference}), q).correct == 1.0
    assert task.grade('{"answer": "0"}', q).correct == 0.0
    assert "[PYTHON]" in task.messages(q)[0]["content"]


def test_mc_prompt_lists_choices():
    q = load_questions(QUESTIONS / "csqa_20.jsonl", limit=1)[0]
    text = get_task("multiple_choice").messages(q)[0]["content"]
    assert "## Choices:\n\n- (A) bank\n- (B) library" in text


@pytest.mark.parametrize(
    ("line", "column"),
    [
        (
            '{"dataset": "d", "question_id": "1", "question": "", "reference": "A", '
            '"task": "math"}',
            "question",
        ),
        ('{"dataset": "d", "question_id": "1", "question": "q", "reference": "A"}', "task"),
        (
            '{"dataset": "d", "question_id": "1", "question": "q", "reference": "A", '
            '"choices": "AB"}',
            "choices",
        ),
    ],
)
def test_bad_question_file_errors_name_file_line_field(tmp_path, line, column):
    p = tmp_path / "q.jsonl"
    good = '{"dataset": "d", "question_id": "0", "question": "q", "reference": "1", "task": "math"}'
    p.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError) as exc:
        load_questions(p)
    assert exc.value.line == 2
    assert exc.value.column == column
    assert str(p) in str(exc.value)


def test_cli_mock_run_resumes_and_validates(tmp_path, capsys):
    args = [
        "--questions",
        str(QUESTIONS / "gsm8k_20.jsonl"),
        "--limit",
        "3",
        "--method",
        "self_moa_seq",
        "--proposers",
        "m",
        "--aggregator",
        "agg",
        "--n-samples",
        "8",
        "--window",
        "4",
        "--repeats",
        "2",
        "--backend",
        "mock",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "wrote" in out
    assert "outputs.jsonl" in out
    assert "summary: rows" in out
    df = load_outputs(tmp_path / "outputs.jsonl")
    agg = df[df.role == "aggregator"]
    assert len(agg) == 3 * 3
    assert agg.is_final.sum() == 3
    assert main(args) == 0
    assert "calls 0" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "q.jsonl"
    bad.write_text("{not json}\n")
    assert (
        main(
            [
                "--questions",
                str(bad),
                "--method",
                "single",
                "--proposers",
                "m",
                "--backend",
                "mock",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "line 1" in err
    assert main(["--questions", str(bad)]) == 2
    assert main(["--help"]) == 0
    assert "--n-samples" in capsys.readouterr().out


@pytest.mark.parametrize(("context", "expected"), [(4096, 6), (600, 3)])
def test_cli_window_auto_fits_context_and_sample_count(tmp_path, capsys, context, expected):
    """--window auto: never more than the samples of one question, smaller for a short context."""
    args = [
        "--questions",
        str(QUESTIONS / "gsm8k_20.jsonl"),
        "--limit",
        "2",
        "--method",
        "self_moa_seq",
        "--proposers",
        "m",
        "--aggregator",
        "m",
        "--n-samples",
        "6",
        "--window",
        "auto",
        "--repeats",
        "2",
        "--context-length",
        str(context),
        "--max-tokens",
        "64",
        "--backend",
        "mock",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    assert f"window: {expected} (auto" in capsys.readouterr().out
    df = load_outputs(tmp_path / "outputs.jsonl")
    agg = df[df.role == "aggregator"]
    assert {json.loads(c)["window"] for c in agg["config"]} == {expected}
    # 1 + ceil((N - w) / (w - k)) aggregation steps per question
    steps = 1 + -(-(6 - expected) // (expected - 2))
    assert agg.groupby("question_id")["step"].nunique().eq(steps).all()
