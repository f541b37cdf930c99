"""Every artifact is published with the mode an ordinary ``open`` gives: ``0o666`` less the umask.

Atomic writers create temporary files; :func:`tempfile.mkstemp` makes them ``0o600``, and renamed
into place they left tables, figures and run stores unreadable to co-authors and web servers
under the usual umask 022. A private umask (077) must keep them private.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qdanalysis._io import atomic_path, atomic_write, default_file_mode, staged_dir
from qdanalysis.analysis.embeddings import EmbeddingCache
from qdanalysis.analysis.export import Provenance, save_figure, save_table
from qdanalysis.runner.llm import ChatRequest, ChatResponse
from qdanalysis.runner.llm.cache import ResponseCache
from qdanalysis.runner.store import RunStore


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_published(paths: list[Path], umask: int) -> None:
    want = 0o666 & ~umask  # 0o644 under 022 (readable by all), 0o600 under 077 (private)
    got = {p.name: oct(mode(p)) for p in paths}
    assert got == {p.name: oct(want) for p in paths}
    leftovers = [p.name for d in {p.parent for p in paths} for p in d.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_default_file_mode_follows_the_umask(umask: int) -> None:
    assert default_file_mode() == 0o666 & ~umask
    assert os.umask(umask) == umask  # reading it left it as it was


def test_atomic_path_and_atomic_write(tmp_path: Path, umask: int) -> None:
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"a")
    with atomic_write(tmp_path / "w.txt", encoding="utf-8") as fh:
        fh.write("w")
    old = tmp_path / "old.txt"  # replacing a file gives the new mode, not the old file's
    old.write_text("x")
    old.chmod(0o600)
    with atomic_write(old, encoding="utf-8") as fh:
        fh.write("new")
    assert_published([tmp_path / "a.bin", tmp_path / "w.txt", old], umask)


def test_staged_dir_publishes_with_the_umask_mode(tmp_path: Path, umask: int) -> None:
    out = tmp_path / "out"
    with staged_dir(out) as stage:
        (stage / "plain.txt").write_text("p")
        fd, private = tempfile.mkstemp(dir=stage, suffix=".csv")  # a writer that makes 0o600
        os.close(fd)
        with atomic_write(stage / "atomic.json", encoding="utf-8") as fh:
            fh.write("{}")
    assert_published(sorted(out.iterdir()), umask)
    assert {p.name for p in out.iterdir()} == {"plain.txt", "atomic.json", Path(private).name}
    assert mode(out) == 0o777 & ~umask


def test_tables_figures_and_sidecars(tmp_path: Path, umask: int) -> None:
    import matplotlib.pyplot as plt

    prov = Provenance(parameters={"vendi_q": 1.0})
    df = pd.DataFrame({"term": ["quality_z"], "estimate": [0.5]})
    written = save_table(
        df, "coefficients", out_dir=tmp_path / "t", formats=("csv", "md", "tex"), provenance=prov
    )
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    try:
        written += save_figure(
            fig, "fig", out_dir=tmp_path / "f", formats=("png", "svg"), provenance=prov
        )
    finally:
        plt.close(fig)
    assert [p.name for p in written] == [
        *("coefficients.csv", "coefficients.md", "coefficients.tex", "coefficients.json"),
        *("fig.png", "fig.svg", "fig.json"),
    ]
    assert_published(written, umask)
    side = json.loads((tmp_path / "t" / "coefficients.json").read_text())
    assert side["parameters"] == {"vendi_q": 1.0}
    assert side["git_sha"] is None or len(side["git_sha"]) == 40
    assert side["git_dirty"] in (None, True, False)


def test_embedding_cache_files(tmp_path: Path, umask: int) -> None:
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    try:
        cache.put_many("m", ["h"], np.ones((1, 4), dtype=np.float32), [3])
        files = sorted((tmp_path / "cache").iterdir())  # the database and its WAL files
        assert {p.name for p in files} >= {"embeddings.sqlite", "embeddings.sqlite-wal"}
        assert_published(files, umask)
    finally:
        cache.close()
    assert mode(tmp_path / "cache") == 0o777 & ~umask


def test_run_store_and_response_cache(tmp_path: Path, umask: int) -> None:
    store = RunStore(tmp_path / "run")
    row = {"dataset": "d", "question_id": "q", "model": "m", "sample_index": 0, "role": "proposer"}
    store.append([{**row, "layer": 0, "status": "ok", "output": "x", "correct": 1.0}])
    outputs = store.write_outputs(tmp_path / "run" / "outputs.jsonl")
    assert json.loads(outputs.read_text())["output"] == "x"
    cache = ResponseCache(tmp_path / "run" / "llm-cache.sqlite")
    try:
        request = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},))
        cache.put("local", request, ChatResponse(text="hello", model="m"))
        assert_published(sorted((tmp_path / "run").iterdir()), umask)
    finally:
        cache.close()
