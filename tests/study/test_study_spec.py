"""The study TOML: its schema, and errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from qdanalysis.cli import study as study_cli
from qdanalysis.studies import StudySpecError, load_study, study_configs
from qdanalysis.studies.spec import key_lines

from .conftest import TEMPLATE, mock_models

REPO = Path(__file__).resolve().parents[2]


def _text(**kw) -> str:
    return TEMPLATE.format(models=mock_models(), limit=3, max_configs=8, **kw)


def _line(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, x in enumerate(text.splitlines(), start=1) if needle in x]
    return hits[nth - 1]


def test_example_study_loads_and_plans_every_method() -> None:
    spec = load_study(REPO / "examples" / "studies" / "mock_gsm8k.toml")
    methods = {c.method for c in study_configs(spec)}
    assert methods == {"self_moa", "mixed_moa", "self_moa_seq", "single"}
    assert spec.models["a"].backend == "mock"
    assert Path(spec.task.questions[0]).is_file()  # resolved relative to the file


def test_unknown_key_names_file_line_and_key(write_study) -> None:
    text = _text().replace(
        'samples = 3\n[[proposers.pool]]\nmodel = "b"\nsamples = 3',
        'samples = 3\n[[proposers.pool]]\nmodel = "b"\nsampels = 3',
    )
    path = write_study(text=text)
    with pytest.raises(StudySpecError) as err:
        load_study(path)
    e = err.value
    assert e.path == str(path)
    assert e.line == _line(text, "sampels")
    assert e.key == ("proposers", "pool", 1, "sampels")
    assert str(e).startswith(f"{path}, line {e.line}, key 'proposers.pool[1].sampels': ")
    assert "got unknown 'sampels'" in str(e)


@pytest.mark.parametrize(
    ("old", "new", "key", "needle"),
    [
        ("[task]\n", '[task]\nquestion = "x"\n', "task.question", "question ="),
        ("concurrency = 4\n", "concurrency = 0\n", "study.concurrency", "concurrency = 0"),
        ('prompt = "moa"', 'prompt = "moe"', "aggregation.aggregators[0].prompt", 'prompt = "moe"'),
        ("[analysis]\n", "[analysis]\nvendi_order = 2\n", "analysis.vendi_order", "vendi_order"),
        ("[analysis]\n", '[analysis]\ncov_type = "HC9"\n', "analysis.cov_type", "HC9"),
        ('model = "agg"', 'model = "nope"', "aggregation.aggregators[0].model", '"nope"'),
        ("[design]\n", "[design]\nn_slots = 3\n", "design.n_slots", "n_slots"),
        ("[models.b]", "[modles.b]", "modles", "[modles.b]"),
    ],
)
def test_bad_keys_and_values_name_their_line(write_study, old, new, key, needle) -> None:
    text = _text().replace(old, new, 1)
    path = write_study(text=text)
    with pytest.raises(StudySpecError) as err:
        load_study(path)
    assert f"line {_line(text, needle)}, key {key!r}: expected" in str(err.value)


def test_toml_syntax_error_names_file_and_line(write_study) -> None:
    text = _text().replace("seed = 0\n", "seed = = 0\n", 1)
    path = write_study(text=text)
    with pytest.raises(StudySpecError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}, line {_line(text, 'seed = = 0')}: expected TOML")


def test_cli_error_is_one_line_exit_1_before_anything_runs(write_study, capsys) -> None:
    path = write_study(text=_text().replace("limit = 3", "limit = 0"))
    assert study_cli.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "key 'task.limit'" in err
    assert not (path.parent / "out").exists()


def test_dry_run_prints_calls_per_model_and_role_and_writes_nothing(write_study, capsys) -> None:
    path = write_study()
    assert study_cli.main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "an estimate" in out
    assert "proposer" in out
    assert "aggregator" in out
    assert "total: " in out
    assert not (path.parent / "out").exists()


def test_key_lines_follow_arrays_of_tables() -> None:
    lines = key_lines("[a]\nx = 1\n[[a.p]]\nm = 1\n[[a.p]]\nm = 2\n[a.p.sub]\nk = 3\n")
    assert lines[("a", "x")] == 2
    assert lines[("a", "p", 1, "m")] == 6
    assert lines[("a", "p", 1, "sub", "k")] == 8


def test_help_documents_the_schema_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        study_cli.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("[models.NAME]", "api_key_env", "[[proposers.pool]]", "--dry-run", "--report"):
        assert word in text
    assert "3 some calls failed" in text
