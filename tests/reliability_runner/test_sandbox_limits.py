"""Model-written code runs in a limited child: each limit is tried and holds."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from qdanalysis.runner.sandbox import run_python


def test_infinite_loop_is_killed_at_the_wall_clock_limit(figures: dict) -> None:
    r = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert r.timed_out
    assert r.returncode is None
    figures.setdefault("sandbox_limits_proven", set()).add("timeout")


def test_fork_bomb_is_contained(figures: dict) -> None:
    # bounded even if a guard failed: only the parent forks, children exit at once
    bomb = (
        "import os\nn = 0\nfor _ in range(50):\n    pid = os.fork()\n    if pid == 0:\n"
        "        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    r = run_python(bomb, timeout_s=3.0)
    assert not r.ok
    assert "os.fork is not allowed" in r.stderr
    for bypass in (
        "import ctypes",
        "import _posixsubprocess",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.posix_spawn('/bin/true', ['t'], {})",
    ):
        r = run_python(bypass, timeout_s=3.0)
        assert not r.ok, bypass
        assert "not allowed" in r.stderr, bypass
    figures.setdefault("sandbox_limits_proven", set()).add("no_fork")


def test_large_allocation_fails(figures: dict) -> None:
    r = run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')\n", memory_mb=256)
    assert not r.ok
    assert "allocated" not in r.stdout
    assert "MemoryError" in r.stderr
    figures.setdefault("sandbox_limits_proven", set()).add("memory")


def test_large_file_fails_inside_the_sandbox(figures: dict) -> None:
    r = run_python("open('big', 'wb').write(b'x' * 5 * 1024 * 1024)\n", max_file_mb=1)
    assert not r.ok
    assert "File too large" in r.stderr
    figures.setdefault("sandbox_limits_proven", set()).add("file_size")


def test_endless_output_does_not_fill_the_parent() -> None:
    r = run_python("while True:\n    print('x' * 100000)\n", timeout_s=3.0, max_file_mb=1)
    assert not r.ok
    assert len(r.stdout) <= 1024 * 1024


@pytest.mark.parametrize(
    "code",
    [
        "open({p!r}, 'w').write('escaped')",
        "import os\nos.close(os.open({p!r}, os.O_WRONLY | os.O_CREAT))",
        "import pathlib\npathlib.Path({p!r}).write_text('escaped')",
        "open('../' + {name!r}, 'w').write('escaped')",
    ],
    ids=["open", "os.open", "pathlib", "dotdot"],
)
def test_write_outside_the_temp_dir_is_refused(code: str, tmp_path: Path, figures: dict) -> None:
    name = f"qda-escape-{uuid.uuid4().hex}"
    target = Path("/tmp") / name
    try:
        r = run_python(code.format(p=str(target), name=name))
        assert not r.ok
        assert "not allowed" in r.stderr
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)
    ok = run_python("open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())")
    assert ok.stdout == "fine\n"
    figures.setdefault("sandbox_limits_proven", set()).add("no_write_outside")


def test_socket_connect_fails(figures: dict) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        code = (
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "print('connected')\n"
        )
        r = run_python(code, timeout_s=3.0)
    assert not r.ok
    assert "connected" not in r.stdout
    figures.setdefault("sandbox_limits_proven", set()).add("no_network")


def test_parent_secrets_are_not_inherited(monkeypatch: pytest.MonkeyPatch, figures: dict) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret-123")
    r = run_python("import os\nprint(sorted(os.environ))\nprint(os.getcwd())\n")
    assert "OPENAI_API_KEY" not in r.stdout
    assert "sk-parent" not in r.stdout
    assert "qda-sandbox-" in r.stdout  # a fresh temporary working directory
    figures.setdefault("sandbox_limits_proven", set()).add("no_env_secrets")


def test_ordinary_benchmark_code_still_runs() -> None:
    code = (
        "import collections, itertools, math, re, string, json\n"
        "def f(nums):\n    return sorted(collections.Counter(nums).items())\n"
        "assert f([1, 1, 3]) == [(1, 2), (3, 1)]\nprint('ok')\n"
    )
    assert run_python(code).stdout == "ok\n"
