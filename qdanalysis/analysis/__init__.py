"""The analysis side: outputs table -> measures -> fits -> tables and figures.

Reads the outputs table (the contract in :mod:`qdanalysis.outputs`) and the configurations
(:mod:`qdanalysis.configs`); never imports the runner side or a model client. Import the stages
from their modules (``qdanalysis.analysis.pipeline``, ``...regression``, ...): this package
imports nothing heavy itself.
"""
