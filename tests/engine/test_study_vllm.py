"""A small study end to end on a real engine: vLLM (CPU) for one model, a second server for the
other (Mixed-MoA across two endpoints), the vLLM model listed with a replica that is down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from engine_fixtures import QUESTIONS, REPO

from qdanalysis.testing.vllm_server import VLLMServer, free_port

sys.path.insert(0, str(REPO / "tests" / "runner" / "llm"))
from fixtures import serve_model, tiny_model_dir

pytestmark = pytest.mark.slow

STUDY = """
[study]
out = "out"
seed = 0
concurrency = 8

[models.smollm2]
backend = "openai"
base_url = "{vllm}"
options = {{ replicas = ["{dead}"] }}
temperature = 0.7

[models.tiny]
backend = "openai"
base_url = "{tiny}"
served_model = "tiny-llama"
temperature = 0.7

[task]
questions = ["{questions}"]
limit = 2

[proposers]
max_tokens = 24
[[proposers.pool]]
model = "smollm2"
samples = 3
[[proposers.pool]]
model = "tiny"
samples = 3

[design]
n = 2
max_configs = 8
seed = 0
methods = ["self_moa", "mixed_moa"]
baselines = ["single", "plurality_vote"]

[aggregation]
max_tokens = 24
[[aggregation.aggregators]]
model = "smollm2"
prompt = "moa"
temperature = 0.0

[analysis]
figures = false
"""


def _config(row: dict) -> dict:
    cfg = row.get("config")
    return json.loads(cfg) if isinstance(cfg, str) else dict(cfg or {})


def test_mixed_moa_study_on_vllm_and_a_second_endpoint(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: the replica is down
    with serve_model(tiny_model_dir(tmp_path)) as tiny:
        toml = tmp_path / "study.toml"
        toml.write_text(
            STUDY.format(
                vllm=vllm_server.base_url,
                dead=dead,
                tiny=tiny,
                questions=QUESTIONS / "csqa_20.jsonl",
            )
        )
        res = subprocess.run(
            [sys.executable, "-m", "qdanalysis.study", str(toml), "--no-progress"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = tmp_path / "out"
    rows = [json.loads(x) for x in (out / "store" / "rows.jsonl").read_text().splitlines() if x]
    assert {r["status"] for r in rows} == {"ok"}
    llm_agg = [
        r for r in rows if r["role"] == "aggregator" and _config(r)["aggregator"]["kind"] == "llm"
    ]
    assert len({r["config_id"] for r in llm_agg}) == 8
    assert len(llm_agg) == 8 * 2
    mixed = {r["config_id"] for r in llm_agg if _config(r)["method"] == "mixed_moa"}
    assert mixed  # Mixed-MoA configurations drew on both endpoints
    assert {r["model"] for r in rows if r["role"] == "proposer"} == {"smollm2", "tiny"}
    assert (out / "fit" / "coefficients.csv").is_file()
    assert "does not answer" in res.stderr  # the down replica was noticed and skipped
