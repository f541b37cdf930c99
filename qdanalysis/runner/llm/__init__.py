"""The LLM layer: one thin async protocol for backends, one managed wrapper around it.

``base`` holds the request/response types and the :class:`ChatClient` protocol; ``managed``,
``cache`` and ``ledger`` add retries, caching and accounting. All of these import nothing heavy.
Backends (``openai_compat``, ``hf_local``, ``vllm_offline``), the local ``server`` and the test
models in ``local_models`` import their dependencies lazily: import them from their modules.
"""

from __future__ import annotations

from .base import ChatClient, ChatRequest, ChatResponse, MultiSampleClient, supports_n
from .cache import ResponseCache
from .ledger import CallRecord, UsageLedger
from .managed import ManagedClient, RetryPolicy

__all__ = [
    "CallRecord",
    "ChatClient",
    "ChatRequest",
    "ChatResponse",
    "ManagedClient",
    "MultiSampleClient",
    "ResponseCache",
    "RetryPolicy",
    "UsageLedger",
    "supports_n",
]
