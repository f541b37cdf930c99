"""Offline aggregation rules over answer keys: the one vote kernel of the toolkit.

Part of the shared contract: the analysis side scores configurations with these rules, and the
runner side's offline ``plurality`` baseline elects its answer with them, so both sides always
agree on what a vote returns. The rules give the *expected* score, with no random numbers: ties
are averaged exactly.

Keys arrive as integer codes of shape ``(m, n)`` (rows of n slots); equal codes are equal
answers and ``-1`` means no answer (it never votes and never wins). :func:`answer_codes` turns a
column of answer keys into such codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import ConfigError

__all__ = [
    "answer_codes",
    "key_counts",
    "oracle_scores",
    "plurality_vote_scores",
    "plurality_winners",
]


def answer_codes(keys: Sequence[object]) -> NDArray[np.int64]:
    """Integer codes of answer keys, in order of first appearance; ``None``/NaN -> ``-1``.

    Examples
    --------
    >>> answer_codes(["b", "a", None, "b"])
    array([ 0,  1, -1,  0])
    """
    import pandas as pd

    s = pd.Series(list(keys), dtype=object)
    codes, _ = pd.factorize(s.where(s.notna(), None), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


def _check_codes(keys: ArrayLike, name: str) -> NDArray[np.int64]:
    k = np.asarray(keys)
    if k.ndim != 2:
        raise ConfigError(f"{name}: expected answer-key codes of shape (m, n); got {k.shape}.")
    return np.asarray(k, dtype=np.int64)


def key_counts(keys: ArrayLike) -> NDArray[np.int64]:
    """``(m, n)`` codes -> ``(m, n)``: how many slots of the row share each slot's key (0 for -1).

    Examples
    --------
    >>> key_counts([[3, 3, 5, -1]])
    array([[2, 2, 1, 0]])
    """
    k = _check_codes(keys, "key_counts")
    valid = k >= 0
    same = (k[:, :, None] == k[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    return np.asarray(same.sum(axis=2), dtype=np.int64)


def plurality_winners(keys: ArrayLike) -> NDArray[np.bool_]:
    """``(m, n)`` mask of the slots whose key is a most frequent one of its row.

    Every slot holding a tied key is marked; no slot is marked in a row without keys.

    Examples
    --------
    >>> plurality_winners([[1, 1, 2], [1, 2, -1], [-1, -1, -1]]).astype(int)
    array([[1, 1, 0],
           [1, 1, 0],
           [0, 0, 0]])
    """
    k = _check_codes(keys, "plurality_winners")
    votes = key_counts(k)
    top = votes.max(axis=1, keepdims=True)
    return np.asarray((k >= 0) & (votes == top) & (top > 0))


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
    winners = plurality_winners(k)
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
