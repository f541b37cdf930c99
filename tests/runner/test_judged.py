"""Open-ended (judged) tasks: pairwise judgement against the reference, both orders."""

import asyncio
import re

import pytest

from qdanalysis.outputs import load_outputs
from qdanalysis.runner.moa import method_configs, run_experiment
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.store import RunStore
from qdanalysis.runner.tasks import Question
from qdanalysis.testing import MockClient

QUESTIONS = [
    Question(
        dataset="open-mini",
        question_id=f"o{i}",
        question=f"Write line {i}.",
        reference="an OK reference",
        task="open",
    )
    for i in range(2)
]


def _sections(prompt: str) -> tuple[str, str]:
    m = re.search(r"## Response A\n(.*)\n\n## Response B\n(.*)\n\nReply", prompt, re.S)
    if m is None:
        raise ValueError(prompt)
    return m.group(1), m.group(2)


def fair_judge(prompt: str) -> str:
    """Prefers GOOD over OK over anything else, whatever the position."""
    a, b = _sections(prompt)
    rank = {True: 2, False: 0}
    ra = rank["GOOD" in a] + ("OK" in a)
    rb = rank["GOOD" in b] + ("OK" in b)
    return "A" if ra > rb else "B" if rb > ra else "tie"


def respond_with(judge):
    def respond(req):
        last = req.messages[-1]["content"]
        if "## Response A" in last:
            return judge(last) + "\nbecause"
        if req.messages[0]["role"] == "system":  # the aggregator
            return "a GOOD synthesis"
        return "a GOOD answer" if req.sample_index % 2 == 0 else "a weak answer"

    return respond


def _run(tmp_path, judge):
    client = MockClient(responder=respond_with(judge))
    configs = method_configs("self_moa", proposers=["m"], aggregator="m", n_samples=4)
    s = asyncio.run(
        run_experiment(
            QUESTIONS,
            configs,
            client=client,
            store=RunStore(tmp_path),
            progress=False,
            options=RunOptions(judge_model="judge"),
        )
    )
    assert s.n_errors == 0
    df = load_outputs(RunStore(tmp_path).write_outputs(tmp_path / "outputs.jsonl"))
    judge_calls = [r for r in client.calls if r.model == "judge"]
    return df, judge_calls


def test_fair_judge_scores_against_the_reference(tmp_path):
    df, calls = _run(tmp_path, fair_judge)
    prop = df[df.role == "proposer"].sort_values(["question_id", "sample_index"])
    assert prop["correct"].tolist() == [1.0, 0.0, 1.0, 0.0] * 2  # GOOD beats OK; weak loses
    agg = df[df.role == "aggregator"]
    assert (agg["correct"] == 1.0).all()
    assert (df["judge_parsed"] == 2).all()
    # every graded output is judged twice, once in each position
    assert len(calls) == 2 * len(df)


def test_position_bias_cancels(tmp_path):
    df, _ = _run(tmp_path, lambda prompt: "A")  # a judge that always picks the first response
    assert (df["correct"] == 0.5).all()


@pytest.mark.parametrize(("reply", "parsed"), [("tie", 2), ("I cannot tell", 0)])
def test_ties_and_unparsed_verdicts(tmp_path, reply, parsed):
    df, _ = _run(tmp_path, lambda prompt: reply)
    assert (df["judge_parsed"] == parsed).all()
    assert (df["correct"] == (0.5 if parsed else 0.0)).all()
