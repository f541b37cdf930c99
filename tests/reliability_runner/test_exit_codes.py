"""Exit codes scripts can trust (repro 5): a dead endpoint, every call failing, some failing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fault_server import fault_server
from rr_helpers import store_lines, write_questions

from qdanalysis.cli import run as run_cli


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: nothing listens there


def _args(q: Path, out: Path, base_url: str) -> list[str]:
    return [
        "--questions",
        str(q),
        "--method",
        "self_moa",
        "--proposers",
        "a",
        "--aggregator",
        "agg",
        "--n-samples",
        "3",
        "--backend",
        "openai",
        "--api-key-env",
        "",
        "--base-url",
        base_url,
        "--out",
        str(out),
        "--max-tokens",
        "32",
        "--no-progress",
    ]


def test_dead_endpoint_fails_before_generating(tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{_dead_port()}/v1"
    q = write_questions(tmp_path / "q.jsonl", 3)
    rc = run_cli.main(_args(q, tmp_path / "run", url))
    cap = capsys.readouterr()
    assert rc == 1
    assert cap.err.count("\n") == 1
    assert cap.err.startswith(f"error: endpoint {url}: expected a server answering")
    assert "--base-url" in cap.err
    assert store_lines(tmp_path / "run" / "rows.jsonl") == ([], False)  # no generation
    assert "summary" not in cap.out


def test_every_call_failing_exits_all_failed(
    tmp_path: Path, capsys, recorded_sleeps: list[float]
) -> None:
    q = write_questions(tmp_path / "q.jsonl", 3)
    with fault_server(plan=lambda a: "500") as srv:  # answers the probe, fails every call
        rc = run_cli.main(_args(q, tmp_path / "run", srv.base_url))
        assert srv.n_probes == 1
        assert srv.arrivals
    err = capsys.readouterr().err
    assert rc == run_cli.EXIT_ALL_FAILED
    # 3 questions x 3 samples, then each configuration's aggregator row marked failed
    assert "error: every call failed: 12 of 12 new rows are errors" in err
    assert "aggregator agg: 3, proposer a: 9" in err
    assert "HTTP 500" in err


def test_some_calls_failing_exits_some_failed_then_resume_exits_0(
    tmp_path: Path, capsys, recorded_sleeps: list[float]
) -> None:
    q = write_questions(tmp_path / "q.jsonl", 2)
    out = tmp_path / "run"
    with fault_server(
        plan=lambda a: "malformed" if a.model == "agg" and a.attempt == 0 else None
    ) as srv:
        assert run_cli.main(_args(q, out, srv.base_url)) == run_cli.EXIT_SOME_FAILED
        assert "error: some call failed: 2 of 8 new rows" in capsys.readouterr().err
        assert run_cli.main(_args(q, out, srv.base_url)) == 0


def test_help_documents_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 some calls failed" in text
    assert "4 every call failed" in text
