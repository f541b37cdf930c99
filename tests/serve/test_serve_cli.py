"""``python -m qdanalysis.serve``: the command line serves the ensembles it describes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, openai_client
from fixtures import wait_ready

from qdanalysis.cli.serve import build_parser, ensembles_from_args, main

REPO = Path(__file__).resolve().parents[2]


def test_flags_make_one_ensemble_per_configuration() -> None:
    args = build_parser().parse_args(
        "--method self_moa --proposers a,b --n-samples 4 --aggregator g --backend mock "
        "--min-references 3 --temperature 0.5".split()
    )
    es = ensembles_from_args(args)
    assert [e.name for e in es] == ["self_moa:a", "self_moa:b"]
    assert [e.needed for e in es] == [3, 3]
    assert es[0].options.temperature == 0.5


def test_bad_flags_exit_1_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    argv = "--method self_moa --proposers a,b --aggregator g --backend mock --name x".split()
    assert main(argv) == 1
    assert "--name: expected one ensemble" in capsys.readouterr().err
    assert main([*argv[:-2], "--min-references", "9"]) == 1
    assert "min_references" in capsys.readouterr().err


def test_serve_command_answers_the_openai_sdk() -> None:
    port = free_port()
    cmd = [
        sys.executable, "-m", "qdanalysis.serve", "--method", "usc", "--proposers", "m",
        "--n-samples", "3", "--aggregator", "m", "--backend", "mock", "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_ready(url, timeout_s=120, proc=proc)
        with openai_client(url) as oa:
            assert [m.id for m in oa.models.list().data] == ["usc:m"]
            out = oa.chat.completions.create(
                model="usc:m", messages=[{"role": "user", "content": "hi"}]
            )
        assert len(out.model_extra["x_moa"]["references"]) == 3
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=30)
    assert f"serving usc:m on http://127.0.0.1:{port}/v1" in stdout
