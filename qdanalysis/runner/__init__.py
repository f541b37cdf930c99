"""The runner side: questions + configurations -> model calls -> the outputs table.

Writes rows in the outputs schema of :mod:`qdanalysis.outputs`; never imports the analysis side
or any statistics. ``llm`` holds the model clients, ``moa`` the ensemble methods, ``store`` the
append-only run store, ``tasks`` and ``answers`` the scoring of outputs.
"""
