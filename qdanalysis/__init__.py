"""qdanalysis: quality and diversity of Mixture-of-Agents LLM ensembles.

Run MoA ensembles, build proposer configurations, measure each configuration's quality
(mean proposer accuracy), diversity (Vendi Score of output embeddings) and performance
(ensemble accuracy), and regress performance on standardised quality and diversity.

``import qdanalysis`` is cheap: torch, transformers, openai and vllm load only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    AuthError,
    ConfigError,
    DataError,
    DataWarning,
    MissingDependencyError,
    ProviderError,
    QDAnalysisError,
    QDAnalysisWarning,
    StatisticalWarning,
)
from .outputs import OUTPUTS_SCHEMA, load_outputs, validate_outputs

__all__ = [
    "OUTPUTS_SCHEMA",
    "AuthError",
    "ConfigError",
    "DataError",
    "DataWarning",
    "MissingDependencyError",
    "ProviderError",
    "QDAnalysisError",
    "QDAnalysisWarning",
    "StatisticalWarning",
    "__version__",
    "load_outputs",
    "validate_outputs",
]
