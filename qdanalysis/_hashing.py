"""The only hashing rules of qdanalysis: canonical JSON and content hashes.

Configuration ids, cache keys and input fingerprints all come from here, so that the same content
always gets the same id on every machine and Python version (never the salted builtin ``hash``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["canonical_json", "content_hash", "file_sha256", "text_sha256"]


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"canonical_json: expected a finite float; got {value!r}.")
        if value.is_integer():
            return int(value) if abs(value) < 2**53 else value
        return value
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Serialise ``value`` to JSON with sorted keys, no spaces and integral floats as ints.

    Examples
    --------
    >>> canonical_json({"b": 1.0, "a": [1, 2.5]})
    '{"a":[1,2.5],"b":1}'
    """
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any, *, length: int = 64) -> str:
    """Hex SHA-256 of ``canonical_json(value)`` (or of a ``str`` as is), cut to ``length``.

    Examples
    --------
    >>> content_hash({"a": 1}, length=12)
    '015abd7f5cc5'
    """
    text = value if isinstance(value, str) else canonical_json(value)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a UTF-8 text (the embedding-cache key of an output)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (for provenance sidecars)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
