"""The fit CLI under bad options and degenerate data: one error line, exit 1, no partial files.

Validation order (documented in ``qdanalysis.fit``): options (argparse, exit 2), ``--out-dir``,
then every input file, then ``--datasets``; the analysis (embedding cache, configurations, fits)
runs before the first artifact is written, and artifacts are published from a staging
directory only when all of them are written. So every failure leaves ``--out-dir`` as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rel_helpers import REPO, cli_args, jsonl_bytes, listing, row

from qdanalysis.cli import fit
from qdanalysis.errors import QDAnalysisWarning


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = fit.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _toy(n_questions: int, models: dict[str, list[int]], *, correct=None):
    if correct is None:  # varies by model and sample, so quality varies across configurations
        correct = lambda q, m, s: int((q + s + ord(m[0])) % (2 + s) == 0)  # noqa: E731
    rows = []
    for q in range(n_questions):
        for m, samples in models.items():
            for s in samples:
                c = correct(q, m, s)
                rows.append(
                    row(
                        question_id=f"q{q}",
                        model=m,
                        sample_index=s,
                        output=f"{m} says {q * 7 + s} because {'yes' if c else 'no'}",
                        answer=str(c),
                        answer_key=str(c),
                        correct=c,
                    )
                )
    return rows


def test_unknown_dataset(real_small: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = cli_args(real_small, out, tmp_path / "c", "--datasets", "rereading/csqa", "nope")
    code, _, err = _run(argv, capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert "--datasets" in line
    assert "'nope'" in line
    assert "rereading/csqa" in line
    assert "Drop --datasets" in line
    assert listing(out) == []


@pytest.mark.parametrize("order", ["-1", "abc", "nan", ""])
def test_bad_vendi_order_is_a_usage_error(order: str, tmp_path: Path, capsys) -> None:
    code, _, err = _run(["--vendi-order", order, "--out-dir", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--vendi-order" in err
    assert "expected a number >= 0 or 'inf'" in err
    assert listing(tmp_path / "o") == []


def test_empty_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["--outputs", str(tmp_path / "empty"), "--out-dir", str(tmp_path)], capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert str(tmp_path / "empty") in line
    assert "found none" in line
    assert listing(tmp_path) == ["empty"]


def test_out_dir_is_a_file(real_small: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    code, _, err = _run(cli_args(real_small, f / "sub", tmp_path / "c"), capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert "--out-dir" in line
    assert "is a file" in line
    assert f.read_text() == "x"
    assert not (tmp_path / "c").exists(), "fails before any work"


def test_zero_variance_in_quality(tmp_path: Path, shared_cache_dir: Path, capsys) -> None:
    # Every output correct: quality is 1 in every configuration and cannot be standardised.
    rows = _toy(3, {"a": [0, 1], "b": [0, 1]}, correct=lambda q, m, s: 1)
    p = tmp_path / "allcorrect.jsonl"
    p.write_bytes(jsonl_bytes(rows))
    out = tmp_path / "out"
    code, _, err = _run(cli_args(p, out, shared_cache_dir, "--n-proposers", "2"), capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert line.count("column 'quality'") == 1
    assert "sd = 0" in line
    assert "dataset 'toy'" in line
    assert "Traceback" not in err
    assert listing(out) == []


def test_single_configuration(tmp_path: Path, shared_cache_dir: Path, capsys) -> None:
    rows = _toy(3, {"a": [0]})
    p = tmp_path / "one.jsonl"
    p.write_bytes(jsonl_bytes(rows))
    out = tmp_path / "out"
    code, _, err = _run(cli_args(p, out, shared_cache_dir, "--n-proposers", "1"), capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert "toy" in line
    assert "configuration" in line
    assert listing(out) == []


@pytest.mark.filterwarnings("ignore::qdanalysis.errors.StatisticalWarning")
def test_question_missing_for_some_proposer_types(
    tmp_path: Path, shared_cache_dir: Path, capsys
) -> None:
    # Model b never answered q0: pairs naming b on q0 are dropped, with a warning; the rest fits.
    rows = [r for r in _toy(6, {"a": [0, 1], "b": [0, 1], "c": [0, 1]})]
    rows = [r for r in rows if not (r["model"] == "b" and r["question_id"] == "q0")]
    p = tmp_path / "gap.jsonl"
    p.write_bytes(jsonl_bytes(rows))
    out = tmp_path / "out"
    code, _stdout, err = _run(cli_args(p, out, shared_cache_dir, "--n-proposers", "2"), capsys)
    assert code == 0, err
    # The CLI shows each data warning once, as one line on stderr.
    warned = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert any("lack an output for some slot" in ln for ln in warned), err
    assert _error_lines(err) == []
    assert {"qd_table.csv", "coefficients.csv"} <= set(listing(out))


def test_corrupt_embedding_cache_is_a_clear_error(real_small: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    bad = cache / "embeddings.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    out = tmp_path / "out"
    code, _, err = _run(cli_args(real_small, out, cache), capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert str(bad) in line
    assert "Delete the file to rebuild the cache" in line
    assert bad.read_bytes() == b"this is not a database" * 100, "never deleted behind your back"
    assert listing(out) == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::qdanalysis.errors.StatisticalWarning")
def test_huge_single_text(tmp_path: Path, shared_cache_dir: Path, capsys) -> None:
    rows = _toy(4, {"a": [0, 1], "b": [0, 1]})
    rows[0]["output"] = "step " * 1_000_000  # 5 MB
    p = tmp_path / "huge.jsonl"
    p.write_bytes(jsonl_bytes(rows))
    out = tmp_path / "out"
    code, _, err = _run(cli_args(p, out, shared_cache_dir, "--n-proposers", "2"), capsys)
    assert code == 0, err
    # The truncation is reported as one warning line on stderr.
    assert any(ln.startswith("warning: ") and "max_seq_length" in ln for ln in err.splitlines())
    assert (out / "qd_table.csv").exists()


def test_error_after_writing_started_leaves_no_partial_files(
    real_small: Path, tmp_path: Path, shared_cache_dir: Path, capsys, monkeypatch
) -> None:
    import qdanalysis.analysis.export as export

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    calls = {"n": 0}
    real = export.save_table

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # qd_table written, coefficients fail: disk full
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(export, "save_table", failing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QDAnalysisWarning)
        code, _, err = _run(cli_args(real_small, out, shared_cache_dir), capsys)
    assert code == 1
    (line,) = _error_lines(err)
    assert "No space left on device" in line
    assert listing(out) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "old"


def test_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"{not json\n")
    from qdanalysis.errors import DataError

    with pytest.raises(DataError):
        fit.main(["--outputs", str(p), "--out-dir", str(tmp_path / "o"), "--debug"])


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "qdanalysis.fit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("bad.jsonl", jsonl_bytes([row()]) + b'{"dataset": "toy", "quest\n', "line 2"),
        (
            "bad.csv",
            b"dataset,question_id,model,sample_index,output,correct\nt,q,m,0,x,7\n",
            "line 2, column 'correct'",
        ),
    ],
)
def test_real_process_exit_code_and_stderr(name: str, data: bytes, where: str, tmp_path: Path):
    p = tmp_path / name
    p.write_bytes(data)
    proc = _subprocess(["--outputs", str(p), "--out-dir", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {p}, {where}")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert listing(tmp_path / "out") == []


def test_real_process_usage_error(tmp_path: Path) -> None:
    proc = _subprocess(["--vendi-order", "-3"], tmp_path)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr
