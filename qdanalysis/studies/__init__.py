"""Whole studies: one TOML file -> proposer pool, aggregator calls, fit, tables, figures.

This package sits above both sides of the toolkit: it imports the runner (to generate) and the
analysis (to fit), which never import each other. ``python -m qdanalysis.study STUDY.toml`` is
its command line.

Examples
--------
>>> from qdanalysis.studies import load_study, run_study  # doctest: +SKIP
>>> result = run_study(load_study("study.toml"))          # doctest: +SKIP
"""

from __future__ import annotations

from .orchestrate import StudyResult, run_study, study_questions
from .plan import estimate_calls, study_configs
from .spec import StudySpec, StudySpecError, load_study

__all__ = [
    "StudyResult",
    "StudySpec",
    "StudySpecError",
    "estimate_calls",
    "load_study",
    "run_study",
    "study_configs",
    "study_questions",
]
