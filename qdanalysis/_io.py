"""Atomic file writes shared by every writer (exports, the run store, the CLIs).

Files are written to a temporary name beside their destination and renamed into place, so a
reader never sees a half-written file. Published files get the permissions an ordinary ``open``
would give them (``0o666`` less the process umask), not the ``0o600`` of :func:`tempfile.mkstemp`,
so co-authors and web servers can read them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "default_file_mode", "staged_dir"]


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666`` less the current umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports the umask in /proc; setting and restoring it (the portable way) would, for
    # an instant, let files that other threads create be world-writable.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory inside ``out_dir``; publish its files only on success.

    Artifacts are written into the staging directory; when the block ends without an exception
    each file is renamed into ``out_dir`` (each rename atomic, so readers only ever see whole
    files). On an exception the staging directory is deleted and ``out_dir`` keeps exactly the
    files it had (and is removed again if this call created it), so a failed run leaves no
    partial artifacts.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield stage
        # Writers that go through mkstemp (some libraries do) leave 0o600: publish every
        # artifact with the mode an ordinary open would have given it.
        mode = default_file_mode()
        for f in sorted(stage.iterdir()):
            if f.is_file():
                os.chmod(f, mode)
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()


def _new_temp_file(path: Path) -> Path:
    """Create an empty, new file beside ``path`` with the mode ``open`` would give it.

    Unlike :func:`tempfile.mkstemp` (always ``0o600``) it asks for ``0o666`` and lets the
    kernel apply the umask, so nothing needs a ``chmod`` afterwards.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp_file(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that atomically replaces ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
