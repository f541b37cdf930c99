"""`python -m benchmarks --quick` writes a well-formed results table (no timing checks)."""

from __future__ import annotations

import csv
import math

import pytest

from benchmarks import __main__ as bench
from benchmarks._common import RESULT_COLUMNS


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_quick_run_writes_table(tmp_path):
    # The model-free sections keep this test fast; the full --quick run adds embeddings/e2e.
    rc = bench.main(["--quick", "--only", "vendi", "gram", "import", "--out-dir", str(tmp_path)])
    assert rc == 0
    with (tmp_path / "results.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert {r["section"] for r in rows} == {"vendi", "gram reuse", "import"}
    for r in rows:
        assert r["benchmark"]
        assert r["size"]
        ratio = float(r["ratio"])
        assert math.isnan(ratio) or ratio > 0
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    for key in ("date (UTC)", "numpy", "cpu", "| benchmark |", "vendi q=1"):
        assert key in md
    assert (tmp_path / "scaling.csv").exists()
