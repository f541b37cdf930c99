import asyncio
import json
import math

import pytest

from qdanalysis.configs import (
    DEFAULT_AGGREGATOR_TEMPERATURE,
    AggregatorSpec,
    ConfigSpec,
    ProposerSlot,
)
from qdanalysis.errors import ConfigError
from qdanalysis.outputs import load_outputs
from qdanalysis.runner.llm.managed import ManagedClient, RetryPolicy
from qdanalysis.runner.moa import (
    method_configs,
    mixed_moa,
    plurality_vote,
    run_experiment,
    self_moa,
    self_moa_seq,
    seq_windows,
    usc,
)
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.prompts import AGGREGATE_AND_SYNTHESIZE
from qdanalysis.runner.store import RunStore
from qdanalysis.testing import MockClient, fail_times


def by_role(client, role):
    """Recorded requests of aggregators (a system message with references) or proposers."""
    agg = [r for r in client.calls if r.messages[0]["role"] == "system"]
    return agg if role == "aggregator" else [r for r in client.calls if r not in agg]


def test_aggregator_prompt_is_the_papers_numbered_references(math_q):
    outs = {0: "first <think>secret</think>answer", 1: "second", 2: "third"}

    def respond(req):
        if req.messages[0]["role"] == "system":
            return '{"answer": "2"}'
        return outs[req.sample_index]

    c = MockClient(responder=respond)
    res = asyncio.run(self_moa(math_q, model="m", n_samples=3, aggregator="agg", client=c))
    (req,) = by_role(c, "aggregator")
    system = req.messages[0]["content"]
    head = AGGREGATE_AND_SYNTHESIZE + "\n\nResponses from models:"
    assert system.startswith(head)
    shown = json.loads(res.final["shown"])
    texts = {"m#0": "first answer", "m#1": "second", "m#2": "third"}
    assert system == head + "".join(f"\n{i + 1}. {texts[t]}" for i, t in enumerate(shown))
    assert res.final["n_think_stripped"] == 1
    # The user turn is the proposer's prompt, unchanged.
    assert req.messages[1:] == by_role(c, "proposer")[0].messages
    assert res.final["correct"] == 1.0


def test_zeroeval_assembly_and_existing_system_message(math_q):
    c = MockClient(responder=lambda r: "r")
    asyncio.run(
        self_moa(
            math_q, model="m", n_samples=2, aggregator="agg", client=c, prompt_style="zeroeval"
        )
    )
    system = by_role(c, "aggregator")[0].messages[0]["content"]
    assert system == AGGREGATE_AND_SYNTHESIZE + " Responses from models:\n 1. r\n 2. r"


@pytest.mark.parametrize(
    ("n", "w", "k"), [(6, 6, 3), (10, 6, 3), (12, 6, 3), (30, 6, 3), (9, 4, 1)]
)
def test_seq_windows_hold_the_right_items(n, w, k, math_q):
    assert len(seq_windows(n, w, k)) == 1 + math.ceil((n - w) / (w - k))

    def respond(req):
        if req.messages[0]["role"] == "system":
            return f"synth {len(c.calls)}"
        return f"sample {req.sample_index}"

    c = MockClient(responder=respond)
    res = asyncio.run(
        self_moa_seq(
            math_q, model="m", n_samples=n, window=w, repeats=k, aggregator="agg", client=c
        )
    )
    aggs = by_role(c, "aggregator")
    assert len(aggs) == 1 + math.ceil((n - w) / (w - k))
    steps = [r for r in res.rows if r["role"] == "aggregator"]
    assert [r["step"] for r in steps] == list(range(len(aggs)))
    assert [r["is_final"] for r in steps] == [False] * (len(aggs) - 1) + [True]
    seen = []
    for step, (req, row) in enumerate(zip(aggs, steps, strict=True)):
        refs = req.messages[0]["content"].split("Responses from models:")[1].strip().split("\n")
        refs = [x.split(". ", 1)[1] for x in refs]
        new = [x for x in refs if x.startswith("sample")]
        copies = [x for x in refs if x.startswith("synth")]
        if step == 0:
            assert len(new) == w
            assert copies == []
        else:
            assert len(copies) == k
            assert len(set(copies)) == 1
            assert copies[0] == steps[step - 1]["output"]
            assert refs[:k] == copies  # copies first by default
            assert 1 <= len(new) <= w - k
        seen.extend(new)
        assert row["n_references"] == len(refs)
    assert seen == [f"sample {i}" for i in range(n)]  # each sample exactly once, in order


def test_seq_copies_last_option(math_q):
    c = MockClient(responder=lambda r: "S" if r.messages[0]["role"] == "system" else "x")
    res = asyncio.run(
        self_moa_seq(
            math_q,
            model="m",
            n_samples=8,
            window=6,
            repeats=3,
            aggregator="agg",
            client=c,
            options=RunOptions(copies_first=False),
        )
    )
    assert json.loads(res.final["shown"])[-3:] == ["synthesis@0"] * 3


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["a", "a", "b"], ("a", 1.0)),
        (["a", "b"], (None, 0.5)),
        (["a", "b", "c", None, None], (None, 1 / 3)),
        ([None], (None, 0.0)),
    ],
)
def test_plurality_ties_match_enumerated_picks(keys, expected):
    rows = [{"answer": k, "answer_key": k, "correct": float(k == "a")} for k in keys]
    assert plurality_vote(rows)[1:] == expected
    # seeded: always one of the tied keys, deterministic
    top = plurality_vote(rows, tie_break="seeded", seed=3)
    assert top == plurality_vote(rows, tie_break="seeded", seed=3)


def test_mixed_moa_two_layers_and_usc(math_q):
    c = MockClient()
    res = asyncio.run(
        mixed_moa(math_q, proposers=["a", "b", "a"], aggregator="agg", client=c, layers=2)
    )
    mids = [r for r in res.rows if r["role"] == "proposer" and r["layer"] == 1]
    assert sorted((r["model"], r["sample_index"]) for r in mids) == [("a", 0), ("a", 1), ("b", 0)]
    assert all(r["config_id"] == res.final["config_id"] for r in mids)
    assert res.final["layer"] == 2
    assert len(c.calls) == 3 + 3 + 1
    c2 = MockClient(
        responder=lambda r: (
            "The most consistent response is Response 2"
            if "most consistent" in r.messages[-1]["content"]
            else f'{{"answer": "{r.sample_index}"}}'
        )
    )
    res = asyncio.run(usc(math_q, proposers=["a", "a", "a"], aggregator="agg", client=c2))
    shown = json.loads(res.final["shown"])
    assert res.final["usc_choice"] == 2
    assert res.final["answer"] == shown[1].split("#")[1]


def _cfgs():
    return (
        method_configs("mixed_moa", proposers=["a", "b", "a"], aggregator="agg", layers=2)
        + method_configs("self_moa", proposers=["a"], aggregator="agg", n_samples=4)
        + method_configs(
            "self_moa_seq", proposers=["a"], aggregator="agg", n_samples=5, window=3, repeats=1
        )
        + method_configs("single", proposers=["a", "b"], aggregator=None)
        + method_configs("plurality", proposers=["a", "b"], aggregator=None, n_samples=4)
        + method_configs("usc", proposers=["b"], aggregator="agg", n_samples=3)
    )


def test_outputs_table_contract(tmp_path, math_q, mc_q):
    store = RunStore(tmp_path)
    c = MockClient()
    configs = _cfgs()
    s = asyncio.run(run_experiment([math_q, mc_q], configs, client=c, store=store, progress=False))
    assert s.n_errors == 0
    assert s.n_failed_configs == 0
    df = load_outputs(store.write_outputs(tmp_path / "outputs.jsonl"))
    prop = df[(df.role == "proposer") & (df.layer == 0)]
    assert prop.config_id.isna().all()
    assert prop.step.isna().all()
    # the pool: each (question, model, sample) exactly once, shared by all configurations
    assert not prop.duplicated(["question_id", "model", "sample_index"]).any()
    agg = df[df.role == "aggregator"]
    finals = agg[agg.is_final == True]  # noqa: E712
    assert len(finals) == 2 * len(configs)
    assert set(finals.config_id) == {c.config_id for c in configs}
    for _, r in agg.iterrows():
        spec = ConfigSpec.from_json(r.config)
        assert spec.config_id == r.config_id
        assert r.layer == spec.layers
        assert r.sample_index == 0
        for slot in spec.proposers:
            assert (
                (prop.question_id == r.question_id)
                & (prop.model == slot.model)
                & (prop.sample_index == slot.sample_index)
            ).sum() == 1
    assert set(agg.model) >= {"agg", "plurality_vote", "a", "b"}
    for col in (
        "prompt_id",
        "seed",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "cached",
        "status",
        "error",
        "created_at",
    ):
        assert col in df.columns
    assert (df.status == "ok").all()
    assert df.created_at.str.endswith("+00:00").all()
    # rerun: nothing asked again
    n = len(c.calls)
    s2 = asyncio.run(
        run_experiment([math_q, mc_q], configs, client=c, store=RunStore(tmp_path), progress=False)
    )
    assert len(c.calls) == n
    assert s2.n_new_rows == 0


def test_pool_uses_complete_n_when_available(tmp_path, math_q):
    c = MockClient()
    managed = ManagedClient(c)
    spec = method_configs("self_moa", proposers=["a"], aggregator="agg", n_samples=4)
    asyncio.run(
        run_experiment([math_q], spec, client=managed, store=RunStore(tmp_path), progress=False)
    )
    assert sorted(r.sample_index for r in c.calls if r.messages[0]["role"] != "system") == [
        0,
        1,
        2,
        3,
    ]


@pytest.mark.parametrize("kind", ["rate_limit", "transient"])
def test_error_rows_after_retries_then_resume(tmp_path, math_q, kind):
    flaky = lambda r: r.model == "b" and r.sample_index == 0  # noqa: E731
    c = MockClient(failure=fail_times(-1, kind=kind, when=flaky))
    managed = ManagedClient(c, retry=RetryPolicy(max_attempts=3, wait=False))
    cfgs = method_configs("mixed_moa", proposers=["a", "b"], aggregator="agg")
    store = RunStore(tmp_path)
    s = asyncio.run(run_experiment([math_q], cfgs, client=managed, store=store, progress=False))
    assert s.n_failed_configs == 1
    assert sum(1 for r in c.calls if flaky(r)) == 3  # max_attempts
    err = store.read(status="error")
    assert set(err.role) == {"proposer", "aggregator"}
    assert "429" in err[err.role == "proposer"].error.iloc[0] or "500" in err.error.iloc[0]
    assert not any(r.messages[0]["role"] == "system" for r in c.calls)  # never aggregated
    # resume with a healthy backend: only the failed proposer and the aggregator are asked
    c2 = MockClient()
    s2 = asyncio.run(
        run_experiment([math_q], cfgs, client=c2, store=RunStore(tmp_path), progress=False)
    )
    assert [(r.model, r.sample_index) for r in c2.calls] == [("b", 0), ("agg", 0)]
    assert s2.n_failed_configs == 0
    assert RunStore(tmp_path).read(status="error").empty


def test_skip_policy_records_references_shown(tmp_path, math_q):
    c = MockClient(failure=fail_times(-1, when=lambda r: r.model == "b"))
    cfgs = method_configs("mixed_moa", proposers=["a", "b", "a"], aggregator="agg")
    store = RunStore(tmp_path)
    asyncio.run(
        run_experiment(
            [math_q],
            cfgs,
            client=c,
            store=store,
            progress=False,
            options=RunOptions(on_proposer_error="skip"),
        )
    )
    final = store.read().query("role == 'aggregator'").iloc[0]
    assert final.n_references == 2
    assert "b#0" not in final.shown


def test_conflicting_temperatures_are_rejected(tmp_path, math_q):
    a = ConfigSpec(
        method="self_moa", proposers=(ProposerSlot(model="m", sample_index=0, temperature=0.7),)
    )
    b = ConfigSpec(
        method="self_moa", proposers=(ProposerSlot(model="m", sample_index=0, temperature=1.0),)
    )
    with pytest.raises(ConfigError, match="two temperatures"):
        asyncio.run(
            run_experiment(
                [math_q], [a, b], client=MockClient(), store=RunStore(tmp_path), progress=False
            )
        )


def test_unknown_aggregator_prompt_is_rejected(math_q):
    spec = ConfigSpec(
        method="self_moa",
        proposers=(ProposerSlot(model="m", sample_index=0),),
        aggregator=AggregatorSpec(kind="llm", model="agg", prompt_id="nope"),
    )
    from qdanalysis.runner.moa import run_config

    with pytest.raises(ConfigError, match="prompt_id"):
        asyncio.run(run_config(math_q, spec, client=MockClient()))


def test_aggregator_by_name_or_spec_sends_identical_requests(math_q):
    """Repro 6: one default aggregator temperature, whichever way the aggregator is named."""
    by_name, by_spec = MockClient(), MockClient()
    asyncio.run(self_moa(math_q, model="m", n_samples=3, aggregator="m", client=by_name))
    spec = AggregatorSpec(kind="llm", model="m")
    asyncio.run(self_moa(math_q, model="m", n_samples=3, aggregator=spec, client=by_spec))
    assert [r.key_fields() for r in by_name.calls] == [r.key_fields() for r in by_spec.calls]
    agg = by_role(by_name, "aggregator")
    assert [r.temperature for r in agg] == [DEFAULT_AGGREGATOR_TEMPERATURE]
    (cfg,) = method_configs("self_moa", proposers=["m"], aggregator="m", n_samples=3)
    assert cfg.aggregator == spec


def test_run_options_reach_every_request(math_q):
    c = MockClient()
    opts = RunOptions(temperature=0.3, top_p=0.8, max_tokens=17, stop=("##",), seed=4)
    asyncio.run(
        mixed_moa(math_q, proposers=["a", "b"], aggregator="agg", client=c, layers=2, options=opts)
    )
    assert {(r.top_p, r.max_tokens, r.stop) for r in c.calls} == {(0.8, 17, ("##",))}
    assert {r.temperature for r in by_role(c, "proposer")} == {0.3}


def test_plurality_vote_agrees_with_the_shared_kernel(rng):
    from qdanalysis.votes import answer_codes, plurality_vote_scores

    for _ in range(200):
        n = int(rng.integers(1, 7))
        keys = [None if x < 0 else "abcd"[x] for x in rng.integers(-1, 4, size=n)]
        rows = [{"answer": k, "answer_key": k, "correct": float(k == "a")} for k in keys]
        codes = answer_codes(keys)[None, :]
        expected = plurality_vote_scores(codes, [[float(k == "a") for k in keys]])[0]
        assert plurality_vote(rows)[2] == pytest.approx(expected, abs=1e-12)


def test_library_errors_name_arguments_not_flags():
    from qdanalysis.runner.moa import choose_window

    with pytest.raises(ConfigError, match="max_tokens or repeats") as info:
        choose_window([900], context_length=1000, prompt_tokens=50, max_tokens=400, repeats=1)
    assert "--" not in str(info.value)
    with pytest.raises(ConfigError, match="expected an aggregator model") as info:
        method_configs("self_moa", proposers=["m"], aggregator=None)
    assert "--" not in str(info.value)


def test_usc_pick_is_what_the_store_keeps(tmp_path, math_q):
    """The stored USC row carries the picked response's answer, so outputs.jsonl scores it."""
    c = MockClient(
        responder=lambda r: (
            "The most consistent response is Response 2"
            if "most consistent" in r.messages[-1]["content"]
            else f'{{"answer": "{r.sample_index}"}}'
        )
    )
    store = RunStore(tmp_path)
    res = asyncio.run(
        usc(math_q, proposers=["a", "a", "a"], aggregator="agg", client=c, store=store)
    )
    (stored,) = [r for r in store.rows() if r["role"] == "aggregator"]
    assert stored["usc_choice"] == 2
    assert stored["answer"] == res.final["answer"] == json.loads(stored["shown"])[1].split("#")[1]
