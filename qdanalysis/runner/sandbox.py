"""Run untrusted Python snippets in a limited subprocess (CRUXEval execution checks).

Limits, all on by default: wall-clock timeout (the process group is killed), CPU seconds, address
space (``RLIMIT_AS``), file size (also bounding the captured stdout and stderr, which go to files,
not pipes), no new processes (``RLIMIT_NPROC`` 0, which root ignores); an empty environment (no
secrets reach the child), a fresh temporary working directory that is deleted afterwards,
isolated mode (``python -I``). Network: when unprivileged user namespaces work (``unshare -rn``),
the child runs in its own empty network namespace. In addition an audit hook installed before the
snippet runs refuses sockets, subprocesses, forks, signals to other processes, ``ctypes``, and
writes, removals and renames outside the working directory. Rlimits and the network namespace are
kernel-enforced; the audit hook is an in-process guard that a determined attacker may evade. This
is a compact guard for model-written benchmark code, not a security boundary: for hostile code
add a container or a separate unprivileged user.

Neighbours: :mod:`qdanalysis.runner.tasks` uses :func:`run_python` for ``crux_mode="execute"``.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import typing
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["SandboxResult", "network_isolation_available", "run_python"]

_PRELUDE = """\
import os, sys
def _qda_guard(event, args, _root=os.path.realpath(os.getcwd()), _os=os, _sys=sys,
               _w=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
    def inside(p):
        if isinstance(p, int):
            return True  # an already open descriptor
        try:
            full = _os.path.realpath(_os.path.join(_root, _os.fsdecode(p)))
        except (TypeError, ValueError):
            return False
        return full == _root or full.startswith(_root + _os.sep)
    bad = event.startswith(("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn",
                            "os.spawn", "os.fork", "os.forkpty", "pty.", "ctypes.", "os.kill",
                            "os.killpg", "os.setsid"))
    bad = bad or (event == "import" and args[0] in ("_posixsubprocess", "_ctypes", "ctypes"))
    if event == "open" and len(args) == 3:
        path, mode, flags = args
        writing = (bool(flags & _w) if isinstance(flags, int)
                   else any(c in str(mode) for c in "wax+"))
        bad = writing and not inside(path)
    if event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                 "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree"):
        bad = not all(inside(a) for a in args if isinstance(a, (str, bytes, _os.PathLike)))
    if bad:
        raise PermissionError("sandbox: " + event + " is not allowed")
sys.addaudithook(_qda_guard)
del _qda_guard, os, sys
"""

_MAX_OUTPUT_MB = 4
"""Most stdout or stderr read back from a snippet, in MiB (the rest is dropped)."""


@dataclass(frozen=True, kw_only=True)
class SandboxResult:
    """The outcome of one sandboxed run."""

    returncode: int | None
    """Exit status (negative: killed by that signal); None on timeout."""
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        """True when the snippet exited with status 0 within the time limit."""
        return self.returncode == 0 and not self.timed_out


@functools.cache
def network_isolation_available() -> bool:
    """Whether ``unshare -rn`` can give the child an empty network namespace here."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return False
    try:
        r = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5, env={})
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def _limits(cpu_s: int, memory_mb: int, max_file_mb: int) -> None:  # runs in the child
    import resource

    os.setsid()
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    # SIGXCPU at the soft limit, SIGKILL one second later at the hard one.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    fsize = max_file_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No new processes or threads. Root (and CAP_SYS_RESOURCE) is exempt from RLIMIT_NPROC, so
    # there only the audit hook and the wall-clock kill of the process group hold.
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _command(code: str, *, isolate_network: bool) -> list[str]:
    """The child's command line: isolated Python running the guard prelude, then ``code``."""
    cmd = [sys.executable, "-I", "-c", _PRELUDE + code]
    if isolate_network and network_isolation_available():
        cmd = [shutil.which("unshare") or "unshare", "-rn", *cmd]
    return cmd


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for ``proc``; past ``timeout_s`` kill its process group. True when it timed out."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return True
    return False


def run_python(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_file_mb: int = 1,
    isolate_network: bool = True,
) -> SandboxResult:
    """Run ``code`` with ``python -I`` in a temporary directory under resource limits.

    Parameters
    ----------
    code
        Python source. It sees no environment variables and a fresh empty cwd.
    timeout_s
        Wall-clock limit in seconds; the CPU limit is this rounded up, plus one second.
    memory_mb
        Address-space limit in MiB.
    max_file_mb
        Largest file the snippet may write, in MiB.
    isolate_network
        Use an empty network namespace when :func:`network_isolation_available`.

    Returns
    -------
    SandboxResult

    Raises
    ------
    ConfigError
        If a limit is not positive.

    Examples
    --------
    >>> run_python("print(1 + 1)").stdout
    '2\\n'
    """
    if timeout_s <= 0 or memory_mb <= 0 or max_file_mb <= 0:
        raise ConfigError(
            f"run_python: expected positive limits; got timeout_s={timeout_s!r}, "
            f"memory_mb={memory_mb!r}, max_file_mb={max_file_mb!r}."
        )
    cmd = _command(code, isolate_network=isolate_network)
    # The CPU limit backs up the wall clock (a busy loop on an idle machine uses CPU as fast as
    # wall time): one second above it, so the wall-clock kill normally comes first.
    cpu_s = max(1, math.ceil(timeout_s)) + 1
    with (
        tempfile.TemporaryDirectory(prefix="qda-sandbox-") as cwd,
        tempfile.TemporaryFile() as out_f,
        tempfile.TemporaryFile() as err_f,
    ):
        # Output goes to files, not pipes, so a snippet printing without end cannot fill this
        # process's memory; the file-size limit also bounds them.
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={},
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            preexec_fn=functools.partial(_limits, cpu_s, memory_mb, max_file_mb),
        )
        timed_out = _wait_or_kill(proc, timeout_s)
        out, err = _read_capped(out_f), _read_capped(err_f)
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and not timed_out:
        # Killed by the CPU-time limit: the snippet ran out of time all the same.
        timed_out = True
    return SandboxResult(
        returncode=None if timed_out else proc.returncode,
        stdout=out,
        stderr=err,
        timed_out=timed_out,
    )


def _read_capped(fh: typing.IO[bytes]) -> str:
    fh.seek(0)
    return fh.read(_MAX_OUTPUT_MB * 1024 * 1024).decode("utf-8", errors="replace")
