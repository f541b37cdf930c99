"""The report page: the HTML, CSS and JavaScript around the embedded data (see :mod:`.report`).

The assets live in ``report_assets/`` (``page.html``, ``page.css``, ``page.js``). The page draws
everything in the browser with plotly.js, inlined from the ``plotly`` Python package (no CDN).
The overview is one JSON block parsed on load; each detail chunk is its own
``<script type="application/json">`` block (parsed on first use) or, in split mode, a script
file ``<files_dir>/<key>.js`` that calls ``qdChunk(key, data)`` when the page adds it.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._optional import require

if TYPE_CHECKING:
    from .report import ReportData

__all__ = ["render_page"]


def _json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: every ``<`` is escaped as ``\\u003c`` (valid JSON,
    only ever inside strings), so no ``</script>`` or ``<!--`` in an output can end the block."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c")


def _asset(name: str) -> str:
    return (resources.files(__package__) / "report_assets" / name).read_text(encoding="utf-8")


def _plotly_js() -> str:
    require("plotly", extra="report", purpose="the HTML report")
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def render_page(
    data: ReportData, *, files_dir: str, max_inline_bytes: int
) -> tuple[str, dict[str, str]]:
    """The page's HTML and, in split mode, the detail files (relative name -> text).

    Details are inlined when their JSON totals at most ``max_inline_bytes``; above that each
    chunk becomes ``<files_dir>/<key>.js`` and the page loads it on demand.
    """
    chunks = {k: _json(v) for k, v in data.chunks.items()}
    split = sum(len(v.encode("utf-8")) for v in chunks.values()) > max_inline_bytes
    overview = dict(data.overview)
    overview["details"] = {**overview["details"], "dir": files_dir if split else None}
    files: dict[str, str] = {}
    blocks: list[str] = []
    for key, text in chunks.items():
        if split:
            files[f"{files_dir}/{key}.js"] = f"qdChunk({json.dumps(key)},{text});\n"
        else:
            blocks.append(f'<script type="application/json" id="chunk-{key}">{text}</script>')
    parts = {
        "title": html.escape(str(overview["title"])),
        "css": _asset("page.css"),
        "plotly": _plotly_js().replace("</script", "<\\/script"),
        "overview": _json(overview),
        "chunks": "\n".join(blocks),
        "app": _asset("page.js"),
    }
    page = _asset("page.html")
    # One pass over the template's markers, so a marker inside the data is never expanded.
    pieces = page.split("{{")
    out = [pieces[0]]
    for piece in pieces[1:]:
        name, _, rest = piece.partition("}}")
        out.append(parts[name] + rest)
    return "".join(out), files
