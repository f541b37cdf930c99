"""Self-MoA-Seq windows: which samples each aggregation step shows, and the largest that fits.

Neighbours: :mod:`qdanalysis.runner.moa` runs the steps; ``python -m qdanalysis.run --window
auto`` measures sample lengths and asks :func:`choose_window`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

__all__ = ["choose_window", "seq_windows"]


def seq_windows(n_samples: int, window: int, repeats: int) -> list[list[int]]:
    """Sample positions shown at each Self-MoA-Seq step (the synthesis copies not included).

    Step 0 shows samples ``0..window-1``; each later step shows the next ``window - repeats``
    unseen samples (the last may hold fewer) next to ``repeats`` copies of the synthesis.

    Examples
    --------
    >>> import math
    >>> seq_windows(10, 6, 3)
    [[0, 1, 2, 3, 4, 5], [6, 7, 8], [9]]
    >>> len(seq_windows(30, 6, 3)) == 1 + math.ceil((30 - 6) / (6 - 3))
    True
    """
    if not 1 <= repeats < window <= n_samples:
        raise ConfigError(
            f"seq_windows: expected 1 <= repeats < window <= n_samples; got repeats={repeats}, "
            f"window={window}, n_samples={n_samples}."
        )
    out = [list(range(window))]
    i = window
    while i < n_samples:
        new = list(range(i, min(i + window - repeats, n_samples)))
        out.append(new)
        i += len(new)
    return out


def choose_window(
    sample_tokens: Sequence[int],
    *,
    context_length: int,
    prompt_tokens: int,
    max_tokens: int,
    repeats: int,
    n_samples: int | None = None,
    per_reference_overhead: int = 8,
) -> int:
    """Largest Self-MoA-Seq window that fits the aggregator's context.

    Rule: every shown item is budgeted at ``L + overhead`` tokens, where ``L`` is the larger of
    the longest measured sample and ``max_tokens`` (the synthesis copies can be that long), and
    ``w = floor((context_length - prompt_tokens - max_tokens) / (L + overhead))``, capped at
    ``n_samples`` (a window cannot show more samples than one question has).

    Parameters
    ----------
    sample_tokens
        Measured token lengths of the samples (all questions pooled).
    context_length
        The aggregator's context window in tokens.
    prompt_tokens
        Tokens of the system paragraph and the longest question.
    max_tokens
        New tokens reserved for the aggregator's answer.
    repeats
        Copies ``k`` of the synthesis; the window must exceed it.
    n_samples
        Samples per question, the cap on the window; ``len(sample_tokens)`` when None (the
        lengths of one question's samples).
    per_reference_overhead
        Tokens budgeted per shown item for its numbering and separators.

    Raises
    ------
    ConfigError
        If even ``repeats + 1`` items do not fit.

    Examples
    --------
    >>> choose_window([100, 300, 200], context_length=4096, prompt_tokens=200, max_tokens=400,
    ...               repeats=1)
    3
    >>> choose_window([100] * 20, context_length=4096, prompt_tokens=200, max_tokens=400, repeats=3)
    8
    >>> choose_window([100] * 20, context_length=4096, prompt_tokens=200, max_tokens=400, repeats=3,
    ...               n_samples=6)
    6
    """
    if not sample_tokens:
        raise ConfigError("choose_window: expected measured sample lengths; got none.")
    per = max(max(sample_tokens), max_tokens) + per_reference_overhead
    cap = len(sample_tokens) if n_samples is None else n_samples
    w = min((context_length - prompt_tokens - max_tokens) // per, cap)
    if w < repeats + 1:
        raise ConfigError(
            f"choose_window: expected room for at least repeats + 1 = {repeats + 1} items; only "
            f"{max(w, 0)} fit in context_length={context_length} tokens. Lower max_tokens or "
            "repeats, or raise context_length."
        )
    return int(w)
