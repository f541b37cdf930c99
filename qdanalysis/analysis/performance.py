"""Ensemble performance: offline aggregators over the slots' answers.

When no LLM aggregator was run, a configuration's answer to a question is decided by a rule over
its proposers' extracted answers. The rules return the *expected* score of the ensemble, with no
random numbers: ties are averaged exactly.

Neighbours: :mod:`qdanalysis.analysis.qdtable` calls these on arrays of shape ``(pairs, n_slots)``;
aggregator rows from :mod:`qdanalysis.runner.moa` runs replace them when present.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError

__all__ = ["OFFLINE_AGGREGATORS", "oracle_scores", "plurality_vote_scores"]

OFFLINE_AGGREGATORS = ("plurality_vote", "oracle")


def plurality_vote_scores(keys: ArrayLike, correct: ArrayLike) -> NDArray[np.float64]:
    """Expected score of a plurality vote over answer keys, per row of slots.

    Parameters
    ----------
    keys
        Integer answer-key codes of shape ``(m, n)``: equal codes are equal answers; ``-1``
        means no answer (it does not vote).
    correct
        Scores in [0, 1] of the same shape (equal keys carry equal scores).

    Returns
    -------
    numpy.ndarray
        float64 ``(m,)``: the score of the most frequent key; when several keys tie, the mean of
        their scores (a uniform random pick among them, in expectation); 0 when no slot has a key.

    Examples
    --------
    >>> plurality_vote_scores([[1, 1, 2], [1, 2, -1], [-1, -1, -1]],
    ...                       [[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    array([1. , 0.5, 0. ])
    """
    k = np.asarray(keys)
    c = np.asarray(correct, dtype=np.float64)
    if k.shape != c.shape or k.ndim != 2:
        raise ConfigError(
            f"plurality_vote_scores: expected keys and correct of one shape (m, n); got "
            f"{k.shape} and {c.shape}."
        )
    valid = k >= 0
    same = (k[:, :, None] == k[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    votes = same.sum(axis=2)  # votes of each slot's key (0 for null keys)
    top = votes.max(axis=1, keepdims=True)
    winners = valid & (votes == top) & (top > 0)
    # Each tied key occupies exactly `top` winning slots, so the slot mean is the key mean.
    n_win = winners.sum(axis=1)
    total = np.where(winners, c, 0.0).sum(axis=1)
    return np.where(n_win > 0, total / np.maximum(n_win, 1), 0.0)


def oracle_scores(correct: ArrayLike) -> NDArray[np.float64]:
    """Best slot score per row: 1 if any slot is correct (an upper bound on any aggregator).

    Examples
    --------
    >>> oracle_scores([[0, 1, 0], [0, 0, 0]])
    array([1., 0.])
    """
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2:
        raise ConfigError(f"oracle_scores: expected shape (m, n); got {c.shape}.")
    return np.asarray(c.max(axis=1), dtype=np.float64)
