"""Thin command-line verbs: parse arguments -> build a spec -> call the library -> exit code.

``python -m qdanalysis.fit`` and ``python -m qdanalysis.run`` are shims into :mod:`.fit` and
:mod:`.run`; :mod:`._common` holds the shared error boundary and logging flags.
"""
