import os

from qdanalysis.runner.sandbox import network_isolation_available, run_python


def test_runs_code_in_an_empty_temp_dir():
    r = run_python("import os; print(os.listdir('.'))")
    assert r.ok
    assert r.stdout.strip() == "[]"


def test_timeout_kills_the_snippet():
    r = run_python("while True: pass", timeout_s=1)
    assert r.timed_out
    assert not r.ok


def test_memory_limit():
    r = run_python("x = bytearray(1024 ** 3)", memory_mb=256)
    assert not r.ok
    assert "MemoryError" in r.stderr


def test_no_network():
    r = run_python(
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', 9))"
    )
    assert not r.ok
    # Either the audit hook or the empty network namespace refused it.
    assert "PermissionError" in r.stderr or "OSError" in r.stderr or network_isolation_available()


def test_no_environment_secrets(monkeypatch):
    monkeypatch.setenv("QDA_TEST_SECRET", "s3cret")
    assert os.environ["QDA_TEST_SECRET"] == "s3cret"
    r = run_python("import os; print(sorted(os.environ))")
    assert "QDA_TEST_SECRET" not in r.stdout
    assert "s3cret" not in r.stdout


def test_no_subprocess():
    r = run_python("import subprocess; subprocess.run(['true'])")
    assert not r.ok
    assert "PermissionError" in r.stderr
