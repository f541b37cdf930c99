"""A small study end to end on the mock backend: dry-run counts, calls, tables, resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.cli import study as study_cli
from qdanalysis.studies import load_study, run_study

from .conftest import call_log, mock_models


@pytest.mark.slow
def test_mock_study_end_to_end_then_rerun_asks_nothing(write_study, tmp_path: Path, capsys) -> None:
    log = tmp_path / "calls.jsonl"
    toml = write_study(models=mock_models(log), limit=4)
    spec = load_study(toml)
    planned = run_study(spec, dry_run=True, progress=False)
    assert not (toml.parent / "out").exists()  # a dry run writes nothing
    assert study_cli.main([str(toml), "--no-progress"]) == 0
    out = toml.parent / "out"
    calls = call_log(log)
    # the dry run's counts are the calls made, per model (the aggregator's role is its own)
    est = planned.estimate.set_index(["model", "role"])["calls"].to_dict()
    assert est == {("a", "proposer"): 12, ("b", "proposer"): 12, ("agg", "aggregator"): 4 * 10}
    assert Counter(c["model"] for c in calls) == {"a": 12, "b": 12, "agg": 40}
    usage = pd.read_csv(out / "fit" / "usage.csv").set_index(["model", "role"])
    assert usage["samples"].to_dict() == est
    # Self-MoA, Mixed-MoA, Self-MoA-Seq and the baselines side by side
    methods = pd.read_csv(out / "fit" / "run_methods.csv")
    assert {"self_moa", "mixed_moa", "self_moa_seq", "single"} <= set(methods["method"])
    assert {"llm", "plurality_vote"} <= {a.split(":")[0] for a in methods["aggregator"]}
    qd = pd.read_csv(out / "fit" / "qd_table.csv")
    assert len(qd) == 9
    assert set(qd["method"]) == {"self_moa", "mixed_moa", "self_moa_seq"}
    coefs = pd.read_csv(out / "fit" / "coefficients.csv")
    assert {"quality_z", "diversity_z"} <= set(coefs["term"])
    assert (out / "fit" / "qd_table.json").is_file()  # provenance sidecar
    text = capsys.readouterr().out
    assert "estimate" in text
    assert "usage of this invocation" in text
    # a rerun asks nothing again and writes the same tables (and, asked, the HTML report)
    before = (out / "fit" / "qd_table.csv").read_text()
    assert study_cli.main([str(toml), "--no-progress", "--report"]) == 0
    assert (out / "fit" / "report.html").stat().st_size > 0
    assert len(call_log(log)) == len(calls)
    assert (out / "fit" / "qd_table.csv").read_text() == before
    again = run_study(load_study(toml), dry_run=True, progress=False)
    assert again.estimate.empty  # nothing left to ask
