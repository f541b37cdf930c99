"""Same inputs and seed give byte-identical tables; no written file holds a key or a local path."""

from __future__ import annotations

import json
import re
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from rel_helpers import REPO, cli_args

from qdanalysis.cli import fit
from qdanalysis.errors import QDAnalysisWarning

FAKE_KEY = "sk-test-RELIABILITY-0123456789abcdefXYZ"
KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16})")


@pytest.fixture(scope="module")
def three_runs(real_small: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two cached runs (the first fills the cache) and one --no-cache run of the fit CLI."""
    base = tmp_path_factory.mktemp("det")
    cache = base / "cache"
    dirs = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_API_KEY", FAKE_KEY)
    mp.setenv("QDANALYSIS_TEST_TOKEN", FAKE_KEY)
    log_file = base / "run.log"  # stderr (-vv logging, warnings) and stdout of all runs
    try:
        with open(log_file, "w") as log, redirect_stderr(log), redirect_stdout(log):
            for name, extra in (("first", ()), ("cached", ()), ("uncached", ("--no-cache",))):
                dirs[name] = base / name
                argv = [*cli_args(real_small, dirs[name], cache, "-vv", "--seed", "7"), *extra]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", QDAnalysisWarning)  # tiny table: expected
                    assert fit.main(argv) == 0
    finally:
        mp.undo()
    return dirs, cache, log_file


@pytest.mark.filterwarnings("ignore::qdanalysis.errors.QDAnalysisWarning")
@pytest.mark.parametrize("table", ["qd_table.csv", "coefficients.csv"])
def test_tables_byte_identical_across_runs_and_cache(three_runs, table: str) -> None:
    dirs, _, _ = three_runs
    first = (dirs["first"] / table).read_bytes()
    assert len(first) > 100
    assert (dirs["cached"] / table).read_bytes() == first
    assert (dirs["uncached"] / table).read_bytes() == first


def test_sidecars_differ_only_in_time(three_runs) -> None:
    dirs, _, _ = three_runs
    a = json.loads((dirs["first"] / "qd_table.json").read_text())
    b = json.loads((dirs["cached"] / "qd_table.json").read_text())
    for d in (a, b):
        d.pop("created_utc")
        d.pop("argv")
    # A fully cached run loads no model: it records no embedding device (the first run's is cpu).
    assert (a["parameters"].pop("embedding_device"), b["parameters"].pop("embedding_device")) == (
        "cpu",
        None,
    )
    # The first run measured the backends (speeds vary run to run); the cached one kept the
    # backend its cache holds, without a probe: the same backend, so the same vectors.
    first, cached = (d["parameters"].pop("embedding_backend_choice") for d in (a, b))
    assert first["reason"].startswith("fastest")
    assert cached["reason"].startswith("cache:")
    assert cached["chosen"] == first["chosen"] == a["parameters"]["embedding_dtype"]
    assert a == b


def test_no_key_in_any_written_file(three_runs) -> None:
    dirs, cache, log_file = three_runs
    files = [p for d in (*dirs.values(), cache) for p in d.rglob("*") if p.is_file()]
    files.append(log_file)
    assert len(files) >= 8
    assert "DEBUG" in log_file.read_text() or "INFO" in log_file.read_text(), "log captured"
    for p in files:
        data = p.read_bytes()
        assert FAKE_KEY.encode() not in data, p
        assert b"sk-test-RELIABILITY" not in data, p


def test_no_absolute_path_in_sidecars(three_runs) -> None:
    dirs, _, _ = three_runs
    home = str(Path.home())
    for p in dirs["first"].glob("*.json"):
        text = p.read_text()
        assert str(REPO) not in text, p
        assert home not in text, p
        for value in json.loads(text)["inputs"]:
            assert not Path(value["path"]).is_absolute(), (p, value)


def _committed(pattern: str) -> list[Path]:
    return sorted(REPO.glob(pattern))


@pytest.mark.parametrize("pattern", ["notebooks/*.ipynb", "figures/*.json", "figures/*.csv"])
def test_committed_artifacts_hold_no_keys_or_local_paths(pattern: str) -> None:
    files = _committed(pattern)
    if not files:
        pytest.skip(f"no {pattern} in this checkout")
    local = [str(REPO), str(Path.home()), "/home/", "/Users/", "C:\\Users\\"]
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert not KEY_LIKE.search(text), p
        for s in local:
            assert s not in text, (p, s)


def test_key_like_pattern_catches_keys() -> None:
    assert KEY_LIKE.search(f"api_key = {FAKE_KEY}")
    assert not KEY_LIKE.search("sk-short")
