"""Drive the report page in headless Chromium (Debian's ``chromium``) with Playwright, offline.

Every request the page makes is recorded; anything but ``file:``, ``data:``, ``blob:`` and
``about:`` is aborted, so a test can assert that the page never reaches the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("QDANALYSIS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def chromium_path() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    return found


@dataclass
class Session:
    page: Any
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    load_s: float = float("nan")

    def open(self, path: Path, *, timeout_ms: int = 60_000) -> float:
        """Open ``path`` and wait until the page's script has run; returns seconds taken."""
        t0 = time.perf_counter()
        self.page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
        self.page.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)
        self.load_s = time.perf_counter() - t0
        return self.load_s


@contextlib.contextmanager
def browser(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Session]:
    """A fresh Chromium (own user-data dir) with a page that records and blocks the network."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError(f"Chromium not found at {CHROMIUM}; run `make setup`.")
    with tempfile.TemporaryDirectory(prefix="qd-chromium-") as ud, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            ud,
            executable_path=exe,
            headless=True,
            args=ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
        )
        try:
            page = ctx.new_page()
            s = Session(page=page)

            def route(r: Any) -> None:
                url = r.request.url
                s.requests.append(url)
                if url.startswith(LOCAL_SCHEMES):
                    r.continue_()
                else:
                    s.blocked.append(url)
                    r.abort()

            ctx.route("**/*", route)
            page.on("pageerror", lambda e: s.errors.append(str(e)))
            page.on(
                "console",
                lambda m: s.errors.append(m.text) if m.type == "error" else None,
            )
            yield s
        finally:
            ctx.close()
