"""Ensemble performance: offline aggregators over the slots' answers (see :mod:`qdanalysis.votes`)."""

from __future__ import annotations

from ..votes import oracle_scores, plurality_vote_scores

__all__ = ["OFFLINE_AGGREGATORS", "oracle_scores", "plurality_vote_scores"]

OFFLINE_AGGREGATORS = ("plurality_vote", "oracle")
