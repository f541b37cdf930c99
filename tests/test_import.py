from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "sentence_transformers", "openai", "vllm", "statsmodels")


def test_import_qdanalysis_stays_light():
    code = (
        "import sys, json, qdanalysis; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_version_is_exposed():
    import qdanalysis

    assert qdanalysis.__version__.count(".") == 2


def test_top_level_exports_resolve():
    import qdanalysis
    from qdanalysis import errors

    assert set(errors.__all__) <= set(qdanalysis.__all__)
    for name in qdanalysis.__all__:
        assert getattr(qdanalysis, name) is not None, name
    assert set(dir(qdanalysis)) >= set(qdanalysis.__all__)
