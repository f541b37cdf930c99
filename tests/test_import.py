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
