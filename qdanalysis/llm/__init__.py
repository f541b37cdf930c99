"""The LLM layer: one thin async protocol for backends, one managed wrapper around it.

``base`` holds the request/response types and the :class:`ChatClient` protocol and imports
nothing heavy; backends (``openai_compat``, ``hf_local``, ``vllm_offline``) import their
dependencies lazily.
"""

from __future__ import annotations

from .base import ChatClient, ChatRequest, ChatResponse

__all__ = ["ChatClient", "ChatRequest", "ChatResponse"]
