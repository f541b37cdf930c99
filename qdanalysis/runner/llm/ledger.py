"""Usage accounting for LLM calls: tokens, latency, cache hits, errors and retries.

:class:`qdanalysis.runner.llm.managed.ManagedClient` books one :class:`CallRecord` per logical call
(a cache hit, a backend call drawing one or ``n`` samples, or a call that failed after its
retries); runners and CLIs print :meth:`UsageLedger.summary`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["CallRecord", "UsageLedger"]


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """One logical call as the managed client saw it."""

    endpoint: str
    """Backend endpoint (base URL or model path)."""
    model: str
    """Requested model."""
    n_samples: int = 1
    """Samples this call returned (or would have returned)."""
    status: str = "ok"
    """``"ok"``, ``"cached"`` or ``"error"``."""
    prompt_tokens: int = 0
    """Prompt tokens billed (once per backend call, also when it drew ``n`` samples)."""
    completion_tokens: int = 0
    """Completion tokens over all samples."""
    latency_s: float = 0.0
    """Wall time of the successful attempt (0 for cache hits)."""
    retries: int = 0
    """Attempts beyond the first."""
    error_kind: str | None = None
    """``ProviderError.kind`` of the final failure, for ``status="error"``."""


class UsageLedger:
    """Thread-safe running totals of LLM usage, with the per-call records.

    Parameters
    ----------
    keep_records
        Keep every :class:`CallRecord` in :attr:`records` (totals are always kept).

    Examples
    --------
    >>> ledger = UsageLedger()
    >>> ledger.record(CallRecord(endpoint="e", model="m", prompt_tokens=3, completion_tokens=5))
    >>> ledger.record(CallRecord(endpoint="e", model="m", status="cached"))
    >>> s = ledger.summary()
    >>> s["calls"], s["cache_hits"], s["prompt_tokens"], s["completion_tokens"]
    (2, 1, 3, 5)
    """

    def __init__(self, *, keep_records: bool = True) -> None:
        self._lock = threading.Lock()
        self._keep = keep_records
        self.records: list[CallRecord] = []
        self._totals: dict[str, Any] = self._zero()
        self._by_model: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _zero() -> dict[str, Any]:
        return {
            "calls": 0,
            "backend_calls": 0,
            "samples": 0,
            "cache_hits": 0,
            "errors": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "latency_s": 0.0,
        }

    @staticmethod
    def _add(totals: dict[str, Any], rec: CallRecord) -> None:
        totals["calls"] += 1
        totals["samples"] += rec.n_samples if rec.status != "error" else 0
        totals["cache_hits"] += rec.status == "cached"
        totals["errors"] += rec.status == "error"
        totals["backend_calls"] += rec.status == "ok"
        totals["retries"] += rec.retries
        totals["prompt_tokens"] += rec.prompt_tokens
        totals["completion_tokens"] += rec.completion_tokens
        totals["latency_s"] += rec.latency_s

    def record(self, rec: CallRecord) -> None:
        """Book one call."""
        with self._lock:
            if self._keep:
                self.records.append(rec)
            self._add(self._totals, rec)
            self._add(self._by_model.setdefault(rec.model, self._zero()), rec)

    def summary(self) -> dict[str, Any]:
        """Totals and a per-model breakdown.

        Returns
        -------
        dict
            ``calls`` (logical calls), ``backend_calls`` (successful backend calls),
            ``samples`` (responses returned), ``cache_hits``, ``errors`` (calls failed after
            retries), ``retries``, ``prompt_tokens``, ``completion_tokens``, ``latency_s`` (sum of
            backend wall times), ``mean_latency_s`` (per backend call, ``None`` without any) and
            ``by_model`` (the same counts per model).
        """
        with self._lock:
            out = dict(self._totals)
            by_model = {m: dict(t) for m, t in sorted(self._by_model.items())}
        n = out["backend_calls"]
        out["mean_latency_s"] = out["latency_s"] / n if n else None
        out["by_model"] = by_model
        return out
