"""Fuzz the outputs loaders with atheris: any bytes -> a table or a DataError, nothing else.

Not collected by pytest. Run (atheris installed, seeds from the hostile catalogue):

    python tests/reliability/fuzz_loaders.py -atheris_runs=20000

Each input is written as a .jsonl, .csv and .jsonl.gz file and loaded; any exception other than
DataError (or a warning-free DataWarning) is a crash and stops the run with its input.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import warnings
from pathlib import Path

from qdanalysis.errors import DataError, DataWarning
from qdanalysis.outputs import load_outputs

TMP = Path(tempfile.gettempdir())
COUNT = {"n": 0, "ok": 0, "rejected": 0}


def one_input(data: bytes) -> None:
    COUNT["n"] += 1
    for name, payload in (
        ("f.jsonl", data),
        ("f.csv", data),
        ("f.jsonl.gz", gzip.compress(data, mtime=0)),
    ):
        p = TMP / name
        p.write_bytes(payload)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                warnings.simplefilter("error")
                load_outputs(p)
            COUNT["ok"] += 1
        except DataError:
            COUNT["rejected"] += 1


def main() -> None:
    import atheris  # only here: pytest's doctest collection imports this module

    global TMP
    TMP = Path(tempfile.mkdtemp(prefix="fuzz-"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    atheris.instrument_all()
    seeds = TMP / "seeds"
    seeds.mkdir()
    from hostile_cases import ACCEPTED, CASES

    for i, c in enumerate(CASES):
        (seeds / f"h{i}").write_bytes(c.data[:4096])
    for i, d in enumerate(ACCEPTED.values()):
        (seeds / f"a{i}").write_bytes(d)
    atheris.Setup([*sys.argv, str(seeds)], one_input)
    try:
        atheris.Fuzz()
    finally:
        print(
            f"fuzz: {COUNT['n']} inputs x 3 formats; {COUNT['ok']} loaded, "
            f"{COUNT['rejected']} rejected with DataError",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
