"""A real eval harness drives a served ensemble: lm-eval's ``local-chat-completions`` model,
through ``simple_evaluate`` on a small local generation task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ensemble

from qdanalysis.testing import MockClient

pytest.importorskip("lm_eval", reason="lm-eval is in the [serve] extra")

QUESTIONS = [("2 + 2", "4"), ("3 + 4", "7"), ("5 + 1", "6")]
TASK = """\
task: qd_serve_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "What is {{{{question}}}}? Answer with the number only."
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 16
metric_list:
  - metric: exact_match
"""


def _sum_responder(request: Any) -> str:
    """Answers the sum in the user turn (so the harness's metric has something to score)."""
    text = request.messages[-1]["content"]
    for q, a in QUESTIONS:
        if q in text:
            return a
    return "?"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # the harness's own import-time deprecations
def test_lm_eval_scores_a_served_self_moa(serve: Any, tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    (tmp_path / "task.yaml").write_text(TASK.format(data=data))
    backend = MockClient(responder=_sum_responder)
    url = serve([ensemble("self_moa", n_samples=3)], backend)
    results = lm_eval.simple_evaluate(
        model="local-chat-completions",
        model_args=f"model=self_moa,base_url={url}/chat/completions,num_concurrent=2,"
        "max_retries=1,tokenized_requests=False",
        tasks=["qd_serve_sums"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        apply_chat_template=True,
        log_samples=True,
    )
    assert results is not None
    score = results["results"]["qd_serve_sums"]["exact_match,none"]
    assert score == 1.0  # every answer came back through the ensemble's aggregator
    assert len(results["samples"]["qd_serve_sums"]) == len(QUESTIONS)
    assert len(backend.calls) == len(QUESTIONS) * (3 + 1)  # 3 references + 1 aggregator each
