"""Mixed-MoA across two endpoints (a study TOML and ``run --endpoint``), and exit codes when an
engine dies midway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qdanalysis.cli import run as run_cli
from qdanalysis.cli import study as study_cli
from qdanalysis.runner.llm import managed
from qdanalysis.runner.store import RunStore
from tests.reliability_runner.fault_server import fault_server

from .conftest import TEMPLATE


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr(managed, "_sleep", no_sleep)


def _http_models(url_a: str, url_b: str) -> str:
    return "\n".join(
        f'[models.{m}]\nbackend = "openai"\nbase_url = "{url}"\nserved_model = "{m}-served"'
        for m, url in (("a", url_a), ("b", url_b), ("agg", url_a))
    )


def _mixed_only(text: str) -> str:
    """Only Mixed-MoA configurations of two slots: one of two samples of each model."""
    return (
        text.replace('self_moa_seq = [{ model = "a", samples = 3, window = 2, repeats = 1 }]', "")
        .replace("samples = 3", "samples = 2")
        .replace("n = 3\n", "n = 2\n")
        .replace('methods = ["self_moa", "mixed_moa"]', 'methods = ["mixed_moa"]')
        .replace('baselines = ["single", "plurality_vote"]', "baselines = []")
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::qdanalysis.errors.StatisticalWarning")  # 4 configurations
def test_mixed_moa_study_with_each_model_on_its_own_endpoint(write_study) -> None:
    with fault_server() as sa, fault_server() as sb:
        text = TEMPLATE.format(
            models=_http_models(sa.base_url, sb.base_url), limit=4, max_configs=8
        )
        toml = write_study(text=_mixed_only(text).replace("[analysis]", "[analysis]\nx = 1"))
        # the [analysis] typo fails before any call reaches either server
        assert study_cli.main([str(toml), "--no-progress"]) == 1
        assert not sa.arrivals
        assert not sb.arrivals
        toml = write_study(text=_mixed_only(text))
        from qdanalysis.studies import load_study, run_study

        res = run_study(load_study(toml), progress=False)
    assert res.n_failed == 0
    assert {a.model for a in sa.arrivals} == {"a-served", "agg-served"}
    assert {a.model for a in sb.arrivals} == {"b-served"}
    rows = RunStore(toml.parent / "out" / "store").rows()
    agg = [r for r in rows if r["role"] == "aggregator"]
    assert len(agg) == 4 * 4  # four Mixed-MoA configurations x 4 questions
    assert {json.loads(r["config"])["method"] for r in agg} == {"mixed_moa"}
    endpoints = {r["model"]: json.loads(r["request"])["endpoint"] for r in rows}
    assert endpoints["a"].startswith(sa.base_url)
    assert endpoints["b"].startswith(sb.base_url)
    assert endpoints["a"] != endpoints["b"]
    usage = res.usage.set_index(["model", "role"])["samples"].to_dict()
    assert usage == {("a", "proposer"): 8, ("b", "proposer"): 8, ("agg", "aggregator"): 16}
    assert len(res.analysis.qd_table) == 4


def _questions(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            q = {"dataset": "toy", "question_id": f"toy/{i}", "question": f"{i} mod 4?"}
            fh.write(json.dumps(q | {"reference": str(i % 4), "task": "math"}) + "\n")
    return path


def _run_args(q: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--questions", str(q), "--api-key-env", "", "--out", str(out), "--max-tokens", "16"),
        *("--no-progress", *extra),
    ]


def test_run_endpoint_flag_sends_each_model_to_its_server(tmp_path: Path) -> None:
    q = _questions(tmp_path / "q.jsonl", 3)
    with fault_server() as sa, fault_server() as sb, fault_server() as sagg:
        args = _run_args(
            q,
            tmp_path / "run",
            *("--method", "mixed_moa", "--proposers", "a,b", "--aggregator", "agg"),
            *("--endpoint", f"a={sa.base_url}", "--endpoint", f"b={sb.base_url},concurrency=1"),
            *("--base-url", sagg.base_url),
        )
        assert run_cli.main(args) == 0
    assert {a.model for a in sa.arrivals} == {"a"}
    assert {a.model for a in sb.arrivals} == {"b"}
    assert {a.model for a in sagg.arrivals} == {"agg"}
    assert sb.max_in_flight == 1  # its own cap


def test_run_endpoint_with_its_own_key_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("B_KEY", "secret-b")
    q = _questions(tmp_path / "q.jsonl", 1)
    with fault_server() as sa, fault_server(expected_key="secret-b") as sb:
        args = _run_args(
            q,
            tmp_path / "run",
            *("--method", "mixed_moa", "--proposers", "a,b", "--aggregator", "a"),
            *("--endpoint", f"a={sa.base_url}", "--endpoint", f"b={sb.base_url},key_env=B_KEY"),
        )
        assert run_cli.main(args) == 0
    assert all(a.auth_ok for a in sb.arrivals)
    assert sb.arrivals


@pytest.mark.slow
def test_an_engine_dying_midway_makes_run_and_study_exit_nonzero(
    tmp_path: Path, write_study, capsys
) -> None:
    q = _questions(tmp_path / "q.jsonl", 10)
    # like a vLLM engine that dies after a few requests: HTTP 500 for every later one
    with fault_server(plan=lambda a: "500" if a.index >= 4 else None) as srv:
        args = _run_args(
            q,
            tmp_path / "run",
            *("--method", "self_moa", "--proposers", "a", "--aggregator", "a"),
            *("--n-samples", "6", "--concurrency", "8", "--base-url", srv.base_url),
        )
        code = run_cli.main(args)
        text = TEMPLATE.format(
            models=_http_models(srv.base_url, srv.base_url), limit=3, max_configs=4
        )
        study_code = study_cli.main([str(write_study(text=text)), "--no-progress"])
    assert code == run_cli.EXIT_SOME_FAILED
    assert study_code == run_cli.EXIT_ALL_FAILED
    err = capsys.readouterr().err
    assert "fit skipped" in err
