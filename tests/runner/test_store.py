import pytest

from qdanalysis.errors import DataWarning
from qdanalysis.runner.store import RunStore

ROW = {
    "dataset": "d",
    "question_id": "q",
    "model": "m",
    "sample_index": 0,
    "role": "proposer",
    "layer": 0,
    "config_id": None,
    "step": None,
    "output": "x",
    "correct": 1.0,
}


def test_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    s = RunStore(tmp_path)
    s.append([ROW | {"status": "ok"}])
    with open(s.path, "a") as fh:
        fh.write('{"dataset": "d", "question_id": "q2", "mod')
    with pytest.warns(DataWarning, match="truncated"):
        s2 = RunStore(tmp_path)
    assert len(s2.done_keys()) == 1
    s2.append([ROW | {"question_id": "q3", "status": "ok"}])
    assert len(RunStore(tmp_path).done_keys()) == 2


def test_latest_row_per_key_wins(tmp_path):
    s = RunStore(tmp_path)
    s.append([ROW | {"status": "error", "correct": None}])
    assert s.done_keys() == set()
    assert len(s.read(status="error")) == 1
    s.append([ROW | {"status": "ok"}])
    assert len(RunStore(tmp_path).done_keys()) == 1
    assert RunStore(tmp_path).read(status="error").empty
