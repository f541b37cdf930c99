"""A run's outputs table feeds ``python -m qdanalysis.fit --aggregator llm`` unchanged.

A deterministic MockClient plays three proposer models of different accuracy (good, mid, bad)
and an aggregator that takes the plurality of the answers it is shown, so quality, diversity and
performance all vary across the 15 configurations. The fit's QD table must report, per
configuration, performance = 100 x mean of the final aggregator rows' ``correct`` and quality =
100 x mean proposer ``correct`` over the slots, both recomputed here from the JSONL.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from itertools import combinations_with_replacement
from pathlib import Path

import pandas as pd
import pytest

from qdanalysis.analysis.methods import run_method_table
from qdanalysis.cli.fit import main as fit_main
from qdanalysis.configs import AggregatorSpec, ConfigSpec, ProposerSlot
from qdanalysis.outputs import load_outputs
from qdanalysis.runner.llm.managed import ManagedClient
from qdanalysis.runner.moa import run_experiment
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.store import RunStore
from qdanalysis.runner.tasks import load_questions
from qdanalysis.testing import MockClient

QUESTIONS = Path(__file__).resolve().parents[2] / "data" / "questions"

MODELS = {"good": 80, "mid": 50, "bad": 20}  # percent of correct samples
STYLES = {
    "good": [
        "The answer follows from the usual purpose of the object.",
        "Thinking about where this is normally found gives the choice.",
    ],
    "mid": [
        "Maybe this one, it sounds plausible enough to me.",
        "I am not sure but I would pick the common option here.",
        "Guessing from the words in the question.",
    ],
    "bad": [
        "Random pick.",
        "Bananas are yellow and so is the sun today.",
        "Numbers: 17 42 99.",
        "Completely unrelated rambling about trains and weather.",
    ],
}
N_SLOTS = 4
LETTERS = "ABCDE"


def _h(*parts: object) -> int:
    import hashlib

    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def make_responder(refs: dict[str, str]):
    def respond(req) -> str:
        if req.messages[0]["role"] == "system":  # aggregator: plurality of the shown answers
            shown = re.findall(r'"answer": "([A-E])"', req.messages[0]["content"])
            votes = Counter(shown)
            best = max(votes.values())
            answer = min(k for k, v in votes.items() if v == best)
            return json.dumps({"reasoning": f"most responses say {answer}", "answer": answer})
        user = req.messages[-1]["content"]
        qid, ref = next((q, r) for q, r in refs.items() if q in user)
        h = _h(req.model, req.sample_index, qid)
        if h % 100 < MODELS[req.model]:
            answer = ref
        else:
            wrong = [x for x in LETTERS if x != ref]
            answer = wrong[h % len(wrong)]
        style = STYLES[req.model]
        return json.dumps({"reasoning": style[h % len(style)], "answer": answer})

    return respond


def configs() -> list[ConfigSpec]:
    out = []
    agg = AggregatorSpec(kind="llm", model="agg", temperature=0.0)
    for combo in combinations_with_replacement(sorted(MODELS), N_SLOTS):  # 15 compositions
        seen: Counter[str] = Counter()
        slots = []
        for m in combo:
            slots.append(ProposerSlot(model=m, sample_index=seen[m], temperature=0.7))
            seen[m] += 1
        method = "self_moa" if len(set(combo)) == 1 else "mixed_moa"
        out.append(ConfigSpec(method=method, proposers=tuple(slots), aggregator=agg))
    return out


def test_run_outputs_feed_fit_llm_aggregator(tmp_path):
    questions = load_questions(QUESTIONS / "csqa_20.jsonl", limit=5)
    refs = {q.question: q.reference for q in questions}
    specs = configs()
    assert len(specs) >= 8
    store = RunStore(tmp_path / "run")
    client = ManagedClient(MockClient(responder=make_responder(refs)), seed=0)
    summary = asyncio.run(
        run_experiment(
            questions,
            specs,
            client=client,
            store=store,
            progress=False,
            options=RunOptions(max_tokens=64),
        )
    )
    assert summary.n_errors == 0
    assert summary.n_failed_configs == 0
    outputs = store.write_outputs(tmp_path / "run" / "outputs.jsonl")

    rc = fit_main(
        [
            "--outputs",
            str(outputs),
            "--aggregator",
            "llm",
            "--out-dir",
            str(tmp_path / "fit"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-figures",
            "--no-progress",
            "-q",
        ]
    )
    assert rc == 0
    table = pd.read_csv(tmp_path / "fit" / "qd_table.csv")
    assert len(table) == len(specs)

    # Independent recomputation from the JSONL rows.
    rows = [json.loads(line) for line in outputs.read_text().splitlines()]
    prop = {
        (r["question_id"], r["model"], r["sample_index"]): r["correct"]
        for r in rows
        if r["role"] == "proposer"
    }
    expected = {}
    for spec in specs:
        final = [
            r["correct"]
            for r in rows
            if r["role"] == "aggregator" and r["config_id"] == spec.config_id and r["is_final"]
        ]
        assert len(final) == len(questions)
        quality = [
            prop[(q.question_id, s.model, s.sample_index)]
            for q in questions
            for s in spec.proposers
        ]
        expected[spec.config_id] = (
            100 * sum(final) / len(final),
            100 * sum(quality) / len(quality),
        )
    got = {
        c: (p, q)
        for c, p, q in zip(table["config_id"], table["performance"], table["quality"], strict=True)
    }
    assert got.keys() == expected.keys()
    for cid, (perf, qual) in expected.items():
        assert got[cid][0] == pytest.approx(perf), cid
        assert got[cid][1] == pytest.approx(qual), cid
    # the mock makes the measures vary, so the fit has something to explain
    assert table["performance"].nunique() > 3
    assert table["quality"].nunique() > 3
    assert table["diversity"].nunique() > 3

    # the analysis side's per-method accuracy agrees with the fit's performance column
    acc = run_method_table(load_outputs(outputs))
    assert len(acc) == len(specs)
    assert (acc["n_questions"] == len(questions)).all()
    for r in acc.itertuples():
        assert r.accuracy == pytest.approx(expected[r.config_id][0])
