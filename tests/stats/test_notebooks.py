"""The notebooks: committed without outputs, and each runs top to bottom (slow)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: clear outputs before committing"
            assert cell.execution_count is None, f"{path.name}: clear execution counts"
    text = path.read_text(encoding="utf-8")
    assert "/work" not in text
    assert "/home/" not in text
    assert "/tmp/" not in text


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch, shipped_cache_dir):
    from nbclient import NotebookClient

    # The run-wide embedding cache of the shipped outputs (built once by tests/conftest.py);
    # run by hand, a notebook builds data/cache itself when it is missing.
    monkeypatch.setenv("QDANALYSIS_CACHE_DIR", str(shipped_cache_dir))
    monkeypatch.setenv("QDANALYSIS_NOTEBOOK_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert len(list((tmp_path / "figures").glob("*.pdf"))) >= 1
