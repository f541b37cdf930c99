"""JSON lines read strictly: the runner's question files and run stores share this reader."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError


def json_lines(
    lines: Iterable[str | bytes], *, path: Path, what: str, fix: str = ""
) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of every non-blank line; a malformed one raises.

    Raises
    ------
    DataError
        Naming ``path`` and the line: ``expected <what>; got malformed JSON (...)``.
    """
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield lineno, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"expected {what}; got malformed JSON ({exc.msg}).{' ' + fix if fix else ''}",
                path=path,
                line=lineno,
            ) from exc
