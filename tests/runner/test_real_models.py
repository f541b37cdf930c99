"""MoA runs on real transformers models: the tiny random Llama (fast), SmolLM2 (slow)."""

import asyncio
import dataclasses
from pathlib import Path

import pytest
from fixtures import serve_model, smollm2_dir  # on sys.path via conftest

from qdanalysis.cli.run import ModelRouter
from qdanalysis.outputs import load_outputs
from qdanalysis.runner.llm.managed import ManagedClient
from qdanalysis.runner.moa import method_configs, run_experiment
from qdanalysis.runner.options import RunOptions
from qdanalysis.runner.store import RunStore
from qdanalysis.runner.tasks import load_questions

QUESTIONS = Path(__file__).resolve().parents[2] / "data" / "questions"


def _configs(models):
    return (
        method_configs("self_moa", proposers=models[:1], aggregator=models[0], n_samples=3)
        + method_configs(
            "self_moa_seq",
            proposers=models[:1],
            aggregator=models[0],
            n_samples=4,
            window=3,
            repeats=1,
        )
        + method_configs("mixed_moa", proposers=models, aggregator=models[0])
        + method_configs("single", proposers=models[:1], aggregator=None)
    )


def _check_run(tmp_path, client, questions, models, counter):
    store = RunStore(tmp_path)
    configs = _configs(models)
    s = asyncio.run(
        run_experiment(
            questions,
            configs,
            client=client,
            store=store,
            progress=False,
            options=RunOptions(max_tokens=24),
        )
    )
    assert s.n_errors == 0
    df = load_outputs(store.write_outputs(tmp_path / "outputs.jsonl"))
    finals = df[(df.role == "aggregator") & (df.is_final == True)]  # noqa: E712
    assert len(finals) == len(configs) * len(questions)
    seq = df[(df.role == "aggregator") & df.config.str.contains("self_moa_seq")]
    assert sorted(seq.step.unique()) == [0, 1]  # 1 + ceil((4 - 3) / (3 - 1)) windows
    n = counter()
    s2 = asyncio.run(
        run_experiment(
            questions,
            configs,
            client=client,
            store=RunStore(tmp_path),
            progress=False,
            options=RunOptions(max_tokens=24),
        )
    )
    assert counter() == n
    assert s2.n_new_rows == 0
    return df


class Counting:
    """Counts calls; ``served`` renames every request's model (a server serving one model name
    answers 404 for the others, so two proposer names share one server this way)."""

    def __init__(self, inner, served=None):
        self.inner, self.endpoint, self.n, self.supports_n = inner, inner.endpoint, 0, True
        self.served = served

    def _req(self, request):
        return request if self.served is None else dataclasses.replace(request, model=self.served)

    async def complete(self, request):
        self.n += 1
        return await self.inner.complete(self._req(request))

    async def complete_n(self, request, n):
        self.n += 1
        return await self.inner.complete_n(self._req(request), n)


def test_tiny_llama_in_process(tmp_path, tiny_llama_dir):
    from qdanalysis.runner.llm.hf_local import HFLocalClient

    backend = Counting(HFLocalClient(tiny_llama_dir, device="cpu"))
    client = ManagedClient(ModelRouter({"tiny": backend, "tiny-b": backend}))
    qs = load_questions(QUESTIONS / "gsm8k_20.jsonl", limit=2)
    df = _check_run(tmp_path, client, qs, ["tiny", "tiny-b"], lambda: backend.n)
    # different samples of one prompt differ (sample-aware seeds)
    outs = (
        df[(df.role == "proposer") & (df.model == "tiny")].groupby("question_id").output.nunique()
    )
    assert (outs > 1).all()


@pytest.mark.slow
def test_smollm2_in_process_and_over_http(tmp_path):
    from qdanalysis.runner.llm.hf_local import HFLocalClient
    from qdanalysis.runner.llm.openai_compat import OpenAICompatClient

    path = smollm2_dir()
    qs = load_questions(QUESTIONS / "csqa_20.jsonl", limit=2)
    backend = Counting(HFLocalClient(path, device="cpu"))
    _check_run(
        tmp_path / "inproc",
        ManagedClient(ModelRouter({"*": backend})),
        qs,
        ["smollm2", "smollm2-b"],
        lambda: backend.n,
    )
    with serve_model(path, extra_args=["--model-name", "smollm2"]) as url:
        http = Counting(OpenAICompatClient(url, api_key_env=None), served="smollm2")
        df = _check_run(
            tmp_path / "http",
            ManagedClient(ModelRouter({"*": http})),
            qs,
            ["smollm2", "smollm2-b"],
            lambda: http.n,
        )
    assert (df.status == "ok").all()
