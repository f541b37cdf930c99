"""Test scaffolding that users may also want: a scripted mock model client, small local models.

Nothing in the library proper imports this package. ``mock`` holds :class:`MockClient`;
``local_models`` builds a tiny random-weights Llama and converts the packaged SmolLM2 GGUF.
"""

from __future__ import annotations

from .mock import MockClient, fail_times

__all__ = ["MockClient", "fail_times"]
