"""Run identity: a stored row is reused only for the settings that made it (repro 4)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from qdanalysis.cli.run import main
from qdanalysis.configs import ConfigSpec, ProposerSlot
from qdanalysis.errors import ConfigError
from qdanalysis.runner.llm.base import ChatRequest, request_key
from qdanalysis.runner.llm.cache import ResponseCache
from qdanalysis.runner.llm.managed import ManagedClient
from qdanalysis.runner.moa import method_configs, run_experiment
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.store import MANIFEST, RunStore
from qdanalysis.testing import MockClient

QUESTIONS = Path(__file__).resolve().parents[2] / "data" / "questions"


def _cli(out, *extra):
    return [
        "--questions",
        str(QUESTIONS / "gsm8k_20.jsonl"),
        "--limit",
        "2",
        "--method",
        "self_moa",
        "--proposers",
        "m",
        "--aggregator",
        "m",
        "--n-samples",
        "3",
        "--backend",
        "mock",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_cli_rerun_with_other_settings_stops_and_names_them(tmp_path, capsys):
    """The issue's repro: T=0.7/96 tokens, then T=0.2/32 tokens into the same store."""
    out = tmp_path / "run"
    assert main(_cli(out, "--temperature", "0.7", "--max-tokens", "96")) == 0
    rows_before = (out / "rows.jsonl").read_bytes()
    capsys.readouterr()
    assert main(_cli(out, "--temperature", "0.2", "--max-tokens", "32")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "options.temperature: 0.7 -> 0.2" in err
    assert "options.max_tokens: 96 -> 32" in err
    assert "--out" in err
    assert (out / "rows.jsonl").read_bytes() == rows_before  # nothing generated, nothing reused
    # the same settings resume; a new store takes the new settings
    assert main(_cli(out, "--temperature", "0.7", "--max-tokens", "96")) == 0
    assert "calls 0" in capsys.readouterr().out
    assert main(_cli(tmp_path / "new", "--temperature", "0.2", "--max-tokens", "32")) == 0
    rows = [json.loads(x) for x in (tmp_path / "new" / "rows.jsonl").read_text().splitlines()]
    assert {(r["temperature"], json.loads(r["request"])["max_tokens"]) for r in rows} == {
        (0.2, 32),  # proposers at the run's temperature
        (0.7, 32),  # the aggregator at AggregatorSpec's temperature
    }
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["identity"]["options"]["max_tokens"] == 96


def _run(store, configs, math_q, **options):
    return asyncio.run(
        run_experiment(
            [math_q],
            configs,
            client=MockClient(),
            store=store,
            options=RunOptions(**options),
            progress=False,
        )
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [("temperature", 0.2), ("top_p", 0.9), ("max_tokens", 32), ("stop", ("\n\n",)), ("seed", 1)],
)
def test_library_rerun_with_other_options_raises(tmp_path, math_q, option, value):
    configs = method_configs("self_moa", proposers=["m"], aggregator="agg", n_samples=2)
    _run(RunStore(tmp_path), configs, math_q)
    with pytest.raises(ConfigError, match=rf"options\.{option}: "):
        _run(RunStore(tmp_path), configs, math_q, **{option: value})
    # execution options are not part of the identity
    assert _run(RunStore(tmp_path), configs, math_q, concurrency=1).n_new_rows == 0


def test_a_changed_slot_temperature_is_not_reused(tmp_path, math_q):
    """Same options, but a configuration file now asks sample 0 at another temperature."""

    def spec(t):
        return [
            ConfigSpec(
                method="self_moa",
                proposers=(ProposerSlot(model="m", sample_index=0, temperature=t),),
            )
        ]

    _run(RunStore(tmp_path), spec(0.7), math_q)
    with pytest.raises(
        ConfigError, match=r"'q1' m#0 \(proposer, layer 0\).*temperature: 0.7 -> 1.0"
    ):
        _run(RunStore(tmp_path), spec(1.0), math_q)


def test_store_key_and_cache_key_agree(tmp_path, math_q):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = ManagedClient(MockClient(), cache=cache)
    configs = method_configs("mixed_moa", proposers=["a", "b"], aggregator="agg")
    store = RunStore(tmp_path / "run")
    asyncio.run(run_experiment([math_q], configs, client=client, store=store, progress=False))
    cache.close()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        cached = {k for (k,) in db.execute("SELECT key FROM responses")}
    made = {r["request_key"] for r in store.rows() if r["request_key"] is not None}
    assert made == cached
    assert len(made) == 3
    r = next(r for r in store.rows() if r["model"] == "a")
    settings = json.loads(r["request"])
    assert settings["endpoint"] == "mock://local"
    assert settings["sample_index"] == 0


def test_request_key_covers_every_sampling_setting():
    base = ChatRequest(model="m", messages=({"role": "user", "content": "x"},), seed=1)
    changed = [
        {"temperature": 0.2},
        {"top_p": 0.5},
        {"max_tokens": 7},
        {"stop": ("x",)},
        {"seed": 2},
        {"sample_index": 1},
        {"model": "n"},
        {"messages": ({"role": "user", "content": "y"},)},
    ]
    import dataclasses

    keys = {request_key("e", dataclasses.replace(base, **c)) for c in changed}
    keys |= {request_key("e", base), request_key("other", base)}
    assert len(keys) == len(changed) + 2


def test_store_without_manifest_but_with_rows_is_refused(tmp_path, math_q):
    configs = method_configs("single", proposers=["m"], aggregator=None)
    _run(RunStore(tmp_path), configs, math_q)
    (tmp_path / MANIFEST).unlink()  # a store written before manifests existed
    with pytest.raises(ConfigError, match="settings they were made with are unknown"):
        _run(RunStore(tmp_path), configs, math_q)


def test_manifest_of_an_empty_store_is_rebound(tmp_path, math_q):
    """A run that stopped before its first row (e.g. a dead endpoint) pins nothing."""
    configs = method_configs("single", proposers=["m"], aggregator=None)
    store = RunStore(tmp_path)
    store.claim({"options": {"max_tokens": 5}})
    assert _run(RunStore(tmp_path), configs, math_q, max_tokens=9).n_new_rows == 2


def test_tiny_llama_rerun_with_other_max_tokens_is_refused(tmp_path, tiny_llama_dir, math_q):
    from qdanalysis.runner.llm.hf_local import HFLocalClient

    client = ManagedClient(HFLocalClient(tiny_llama_dir, device="cpu"))
    configs = method_configs("self_moa", proposers=["tiny"], aggregator="tiny", n_samples=2)

    def run(max_tokens):
        return asyncio.run(
            run_experiment(
                [math_q],
                configs,
                client=client,
                store=RunStore(tmp_path),
                options=RunOptions(max_tokens=max_tokens),
                progress=False,
            )
        )

    first = run(8)
    assert first.n_errors == 0
    assert first.n_calls >= 2
    again = run(8)
    assert again.n_calls == 0
    assert again.n_new_rows == 0
    with pytest.raises(ConfigError, match=r"options\.max_tokens: 8 -> 4"):
        run(4)
