"""RunOptions: the settings of one run, built once (by a caller or the CLI) and passed whole.

Every option of the runner has its default here and nowhere else: :func:`qdanalysis.runner.moa`
runners, :func:`~qdanalysis.runner.moa.run_experiment` and ``python -m qdanalysis.run`` all read
it from a :class:`RunOptions`. What a configuration is (method, proposer slots, aggregator,
window and repeats) lives in :class:`~qdanalysis.configs.ConfigSpec` and its ``config_id``; how
it is run lives here.

The *identity* of a run (:meth:`RunOptions.identity`) is every option that can change a stored
row; the store records it in its manifest and refuses a rerun that differs (see
:meth:`qdanalysis.runner.store.RunStore.claim`). Execution options (``concurrency``,
``timeout_s``) never change a row and stay out of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..configs import DEFAULT_PROPOSER_TEMPERATURE
from ..errors import ConfigError

__all__ = ["EXECUTION_FIELDS", "ON_PROPOSER_ERROR", "TIE_BREAKS", "RunOptions"]

ON_PROPOSER_ERROR = ("fail", "skip")
TIE_BREAKS = ("expected", "seeded")
#: Options that change how fast a run goes, never what it stores (left out of its identity).
EXECUTION_FIELDS = ("concurrency", "timeout_s")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a run calls its models, grades and aggregates; one default per option.

    Examples
    --------
    >>> o = RunOptions(temperature=0.2, max_tokens=32)
    >>> o.identity()["max_tokens"], "concurrency" in o.identity()
    (32, False)
    >>> RunOptions.from_dict(o.to_dict()) == o
    True
    """

    temperature: float = DEFAULT_PROPOSER_TEMPERATURE
    """Proposer temperature of slots that give none (intermediate layers too)."""
    top_p: float = 1.0
    """Nucleus sampling mass of every call."""
    max_tokens: int = 2048
    """Completion limit of every call (proposers, and aggregators unless
    :attr:`aggregator_max_tokens` is set)."""
    aggregator_max_tokens: int | None = None
    """Completion limit of aggregator calls; None: :attr:`max_tokens`."""
    stop: tuple[str, ...] = ()
    """Stop strings of every call."""
    seed: int = 0
    """Run seed: request seeds and the aggregator's shuffle of the proposers derive from it."""
    on_proposer_error: str = "fail"
    """A proposer failed after retries: ``"fail"`` marks the configuration failed for that
    question (retried on resume), ``"skip"`` aggregates the remaining references."""
    min_references: int | None = None
    """With ``on_proposer_error="skip"``: the fewest successful references an aggregator may
    see (fewer fails the configuration for that question); None: 1."""
    tie_break: str = "expected"
    """Plurality-vote ties: ``"expected"`` (mean score of the tied keys) or ``"seeded"``."""
    copies_first: bool = True
    """Self-MoA-Seq: the synthesis copies come before (True) or after the new samples."""
    judge_model: str | None = None
    """Judge of judged (open-ended) tasks."""
    concurrency: int = 8
    """Most calls in flight per endpoint (execution only)."""
    timeout_s: float | None = 600.0
    """Limit of one call attempt in seconds, None for none (execution only)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        checks = (
            ("temperature", 0 <= self.temperature <= 5, "a number in [0, 5]"),
            ("top_p", 0 < self.top_p <= 1, "a number in (0, 1]"),
            ("max_tokens", _positive_int(self.max_tokens), "an int >= 1"),
            (
                "aggregator_max_tokens",
                self.aggregator_max_tokens is None or _positive_int(self.aggregator_max_tokens),
                "None or an int >= 1",
            ),
            (
                "min_references",
                self.min_references is None or _positive_int(self.min_references),
                "None or an int >= 1",
            ),
            ("on_proposer_error", self.on_proposer_error in ON_PROPOSER_ERROR, ON_PROPOSER_ERROR),
            ("tie_break", self.tie_break in TIE_BREAKS, TIE_BREAKS),
            ("concurrency", isinstance(self.concurrency, int) and self.concurrency >= 1, ">= 1"),
            ("timeout_s", self.timeout_s is None or self.timeout_s > 0, "None or > 0"),
        )
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(
                    f"RunOptions.{name}: expected {what}; got {getattr(self, name)!r}."
                )
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"RunOptions.stop: expected non-empty strings; got {self.stop!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every option."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    def identity(self) -> dict[str, Any]:
        """The options that can change a stored row (all but :data:`EXECUTION_FIELDS`)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunOptions:
        """Build from a mapping, rejecting unknown keys by name."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"RunOptions: expected keys from {names}; got unknown {unknown}. Remove them."
            )
        return cls(**dict(data))

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of option ``name`` (for CLIs that show it).

        Examples
        --------
        >>> RunOptions.default("max_tokens")
        2048
        """
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.default
        raise ConfigError(f"RunOptions: expected an option name; got {name!r}.")
