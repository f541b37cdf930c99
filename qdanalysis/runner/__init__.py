"""The runner side: questions + configurations -> model calls -> the outputs table.

Writes rows in the outputs schema of :mod:`qdanalysis.outputs` (built by
:func:`qdanalysis.schema.output_row`); never imports the analysis side or any statistics. ``llm``
holds the model clients, ``options`` the run's :class:`~.options.RunOptions`, ``engine`` the
calls-to-rows machinery and run identity, ``moa`` the ensemble methods, ``windows`` the
Self-MoA-Seq windows, ``store`` the append-only run store and its manifest, ``tasks`` and
``answers`` the scoring of outputs.
"""
