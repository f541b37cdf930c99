"""The catalogue of hostile outputs files: each one bad in one way, with the error it must give.

Shared by the loader tests, the CLI tests and the fuzz harness (as seeds).
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass

import pandas as pd
from rel_helpers import jsonl_bytes, row


@dataclass(frozen=True)
class Hostile:
    """A hostile file and the error it must produce."""

    id: str
    category: str
    name: str
    data: bytes
    line: int | None
    column: str | None
    says: str
    """A piece of the message (what was expected or the fix)."""


def _two(bad: dict) -> bytes:
    return jsonl_bytes([row(), bad])


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


GOOD = jsonl_bytes([row()])
_good_line = json.dumps(row(sample_index=1))

CASES: list[Hostile] = [
    # -- malformed and truncated JSON -----------------------------------------------------------
    Hostile(
        "truncated-last-line",
        "malformed JSON",
        "o.jsonl",
        GOOD + _good_line[:30].encode(),
        2,
        None,
        "malformed JSON",
    ),
    Hostile(
        "trailing-comma",
        "malformed JSON",
        "o.jsonl",
        GOOD + _good_line[:-1].encode() + b", }\n",
        2,
        None,
        "malformed JSON",
    ),
    Hostile(
        "single-quotes",
        "malformed JSON",
        "o.jsonl",
        GOOD + _good_line.replace('"', "'").encode() + b"\n",
        2,
        None,
        "malformed JSON",
    ),
    Hostile(
        "array-line",
        "malformed JSON",
        "o.jsonl",
        GOOD + b"[1, 2, 3]\n",
        2,
        None,
        "JSON object per line",
    ),
    Hostile(
        "string-line",
        "malformed JSON",
        "o.jsonl",
        GOOD + b'"hello"\n',
        2,
        None,
        "JSON object per line",
    ),
    Hostile(
        "two-objects-one-line",
        "malformed JSON",
        "o.jsonl",
        GOOD + GOOD.strip() + GOOD,
        2,
        None,
        "malformed JSON",
    ),
    Hostile(
        "deep-nesting",
        "malformed JSON",
        "o.jsonl",
        GOOD + b"[" * 200_000 + b"]" * 200_000 + b"\n",
        2,
        None,
        "nested too deeply",
    ),
    Hostile(
        "nul-bytes",
        "malformed JSON",
        "o.jsonl",
        GOOD + b"\x00\x00\x00\n",
        2,
        None,
        "malformed JSON",
    ),
    Hostile(
        "whole-file-json-array",
        "malformed JSON",
        "o.jsonl",
        json.dumps([row(), row(sample_index=1)], indent=1).encode(),
        1,
        None,
        "JSON",
    ),
    # -- encodings ---------------------------------------------------------------------------
    Hostile(
        "latin-1",
        "encoding",
        "o.jsonl",
        GOOD
        + _good_line.replace("The answer", "Caf\u00e9 answer")
        .encode("latin-1")
        .replace(b"\\u00e9", b"\xe9")
        + b"\n",
        2,
        None,
        "UTF-8",
    ),
    Hostile(
        "cp1252-quotes",
        "encoding",
        "o.jsonl",
        GOOD
        + _good_line.replace("The answer", "\x93The\x94 answer")
        .encode("latin-1")
        .replace(b"\\u0093", b"\x93")
        .replace(b"\\u0094", b"\x94")
        + b"\n",
        2,
        None,
        "iconv",
    ),
    Hostile("utf-16", "encoding", "o.jsonl", GOOD.decode().encode("utf-16"), 1, None, "UTF-8"),
    Hostile(
        "lone-surrogate",
        "encoding",
        "o.jsonl",
        GOOD + _good_line.replace("The answer", "\\ud800 answer").encode() + b"\n",
        2,
        "output",
        "surrogate",
    ),
    # -- wrong types ----------------------------------------------------------------------------
    Hostile(
        "correct-text",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, correct="yes")),
        2,
        "correct",
        "finite number",
    ),
    Hostile(
        "correct-list",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, correct=[1])),
        2,
        "correct",
        "finite number",
    ),
    Hostile(
        "sample-index-text",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index="1")),
        2,
        "sample_index",
        "non-negative integer",
    ),
    Hostile(
        "sample-index-fraction",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1.5)),
        2,
        "sample_index",
        "non-negative integer",
    ),
    Hostile(
        "sample-index-negative",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=-1)),
        2,
        "sample_index",
        "non-negative integer",
    ),
    Hostile(
        "sample-index-huge",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=2**70)),
        2,
        "sample_index",
        "2**53",
    ),
    Hostile(
        "sample-index-bool",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=True)),
        2,
        "sample_index",
        "non-negative integer",
    ),
    Hostile(
        "question-id-list",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, question_id=[1])),
        2,
        "question_id",
        "Store 'question_id' as text",
    ),
    Hostile(
        "dataset-object",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, dataset={"a": 1})),
        2,
        "dataset",
        "as text",
    ),
    Hostile(
        "model-empty",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, model="  ")),
        2,
        "model",
        "non-empty string",
    ),
    Hostile(
        "output-number",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, output=42)),
        2,
        "output",
        "as a string",
    ),
    Hostile(
        "output-list",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, output=["a"])),
        2,
        "output",
        "as a string",
    ),
    Hostile(
        "answer-key-object",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, answer_key={"k": 1})),
        2,
        "answer_key",
        "as text",
    ),
    Hostile(
        "temperature-text",
        "wrong type",
        "o.jsonl",
        _two(row(sample_index=1, temperature="hot")),
        2,
        "temperature",
        "finite number",
    ),
    # -- NaN, infinities and ranges ----------------------------------------------------------
    Hostile(
        "correct-nan",
        "NaN/inf/range",
        "o.jsonl",
        GOOD + _good_line.replace('"correct": 1', '"correct": NaN').encode() + b"\n",
        2,
        "correct",
        "NaN",
    ),
    Hostile(
        "correct-infinity",
        "NaN/inf/range",
        "o.jsonl",
        GOOD + _good_line.replace('"correct": 1', '"correct": Infinity').encode() + b"\n",
        2,
        "correct",
        "finite number",
    ),
    Hostile(
        "correct-minus-infinity",
        "NaN/inf/range",
        "o.jsonl",
        GOOD + _good_line.replace('"correct": 1', '"correct": -Infinity').encode() + b"\n",
        2,
        "correct",
        "finite number",
    ),
    Hostile(
        "correct-1e999",
        "NaN/inf/range",
        "o.jsonl",
        GOOD + _good_line.replace('"correct": 1', '"correct": 1e999').encode() + b"\n",
        2,
        "correct",
        "finite number",
    ),
    Hostile(
        "correct-above-1",
        "NaN/inf/range",
        "o.jsonl",
        _two(row(sample_index=1, correct=1.5)),
        2,
        "correct",
        "[0, 1]",
    ),
    Hostile(
        "correct-percent",
        "NaN/inf/range",
        "o.jsonl",
        _two(row(sample_index=1, correct=100)),
        2,
        "correct",
        "Map labels or percentages",
    ),
    Hostile(
        "correct-negative",
        "NaN/inf/range",
        "o.jsonl",
        _two(row(sample_index=1, correct=-0.01)),
        2,
        "correct",
        "[0, 1]",
    ),
    Hostile(
        "temperature-nan",
        "NaN/inf/range",
        "o.jsonl",
        GOOD
        + _good_line.replace('"correct": 1', '"correct": 1, "temperature": Infinity').encode()
        + b"\n",
        2,
        "temperature",
        "finite number",
    ),
    # -- missing and null values, columns -----------------------------------------------------
    Hostile(
        "missing-column",
        "missing/extra columns",
        "o.jsonl",
        jsonl_bytes([row(correct=...), row(sample_index=1, correct=...)]),
        None,
        None,
        "missing ['correct']",
    ),
    Hostile(
        "missing-field-one-row",
        "missing/extra columns",
        "o.jsonl",
        _two(row(sample_index=1, model=...)),
        2,
        "model",
        "Every row needs 'model'",
    ),
    Hostile(
        "null-correct",
        "missing/extra columns",
        "o.jsonl",
        _two(row(sample_index=1, correct=None)),
        2,
        "correct",
        "null",
    ),
    Hostile(
        "null-question-id",
        "missing/extra columns",
        "o.jsonl",
        _two(row(sample_index=1, question_id=None)),
        2,
        "question_id",
        "null",
    ),
    # -- duplicates and inconsistent questions -----------------------------------------------------
    # (identical copies of a row are one output, loaded once: see test_hostile_inputs)
    Hostile(
        "duplicate-key-other-output",
        "duplicates",
        "o.jsonl",
        GOOD + jsonl_bytes([row(output="The answer is 5.", correct=0)]),
        2,
        "sample_index",
        "line 1",
    ),
    Hostile(
        "duplicate-after-type-coercion",
        "duplicates",
        "o.jsonl",
        jsonl_bytes([row(question_id=7), row(question_id="7", answer="5")]),
        2,
        "sample_index",
        "duplicate",
    ),
    Hostile(
        "two-question-texts",
        "duplicates",
        "o.jsonl",
        jsonl_bytes([row(question="2+2?"), row(sample_index=1, question="3+3?")]),
        2,
        "question",
        "different ids",
    ),
    # -- empty inputs -----------------------------------------------------------------------------
    Hostile("empty-file", "empty", "o.jsonl", b"", None, None, "empty"),
    Hostile("blank-lines-only", "empty", "o.jsonl", b"\n\n  \r\n", None, None, "empty"),
    Hostile("empty-csv", "empty", "o.csv", b"", None, None, "empty"),
    Hostile(
        "header-only-csv",
        "empty",
        "o.csv",
        b"dataset,question_id,model,sample_index,output,correct\n",
        None,
        None,
        "empty",
    ),
    # -- compression and containers ---------------------------------------------------------------
    Hostile("not-gzip", "corrupt container", "o.jsonl.gz", GOOD, None, None, "uncorrupted"),
    Hostile(
        "truncated-gzip",
        "corrupt container",
        "o.jsonl.gz",
        gzip.compress(GOOD * 40)[:50],
        None,
        None,
        "uncorrupted",
    ),
    Hostile(
        "gzip-bad-crc",
        "corrupt container",
        "o.jsonl.gz",
        gzip.compress(GOOD)[:-8] + b"\0" * 8,
        None,
        None,
        "uncorrupted",
    ),
    Hostile(
        "corrupt-parquet",
        "corrupt container",
        "o.parquet",
        b"PAR1garbagePAR1",
        None,
        None,
        "Parquet",
    ),
    Hostile(
        "truncated-parquet",
        "corrupt container",
        "o.parquet",
        _parquet(pd.DataFrame([row()]))[:100],
        None,
        None,
        "Parquet",
    ),
    Hostile("unknown-suffix", "corrupt container", "o.txt", GOOD, None, None, "Convert the file"),
    # -- CSV and Parquet variants of bad cells ----------------------------------------------------
    Hostile(
        "csv-correct-text",
        "CSV/Parquet variants",
        "o.csv",
        _csv(pd.DataFrame([row(), row(sample_index=1, correct="yes")])),
        3,
        "correct",
        "finite number",
    ),
    Hostile(
        "csv-latin-1",
        "CSV/Parquet variants",
        "o.csv",
        _csv(pd.DataFrame([row(), row(sample_index=1)])).replace(b"The", b"Th\xe9"),
        2,
        None,
        "UTF-8",
    ),
    Hostile(
        "csv-ragged",
        "CSV/Parquet variants",
        "o.csv",
        b"dataset,question_id,model,sample_index,output,correct\ntoy,q1,m1,0,x,1\n"
        b"toy,q1,m1,1,x,1,extra,extra\n",
        3,
        None,
        "fields",
    ),
    Hostile(
        "csv-missing-column",
        "CSV/Parquet variants",
        "o.csv",
        b"dataset,question_id,model,output,correct\ntoy,q1,m1,x,1\n",
        None,
        None,
        "missing ['sample_index']",
    ),
    Hostile(
        "csv-nan-text-correct",
        "CSV/Parquet variants",
        "o.csv",
        b"dataset,question_id,model,sample_index,output,correct\ntoy,q1,m1,0,x,NaN\n",
        2,
        "correct",
        "finite number",
    ),
    Hostile(
        "parquet-correct-range",
        "CSV/Parquet variants",
        "o.parquet",
        _parquet(pd.DataFrame([row(), row(sample_index=1, correct=2.0)])),
        2,
        "correct",
        "[0, 1]",
    ),
    Hostile(
        "parquet-duplicate",
        "CSV/Parquet variants",
        "o.parquet",
        _parquet(pd.DataFrame([row(), row(correct=0)])),
        2,
        "sample_index",
        "duplicate",
    ),
]

#: Files that look odd but are valid: they must load.
ACCEPTED: dict[str, bytes] = {
    "bom.jsonl": b"\xef\xbb\xbf" + GOOD,
    "crlf.jsonl": GOOD.replace(b"\n", b"\r\n") + _good_line.encode() + b"\r\n",
    "bom.csv": b"\xef\xbb\xbf" + _csv(pd.DataFrame([row()])),
    "crlf.csv": _csv(pd.DataFrame([row(), row(sample_index=1)])).replace(b"\n", b"\r\n"),
    "gz.jsonl.gz": gzip.compress(GOOD),
    "extra-columns.jsonl": jsonl_bytes([row(judge={"a": [1, 2]}, latency_s=0.5)]),
    "no-trailing-newline.jsonl": GOOD.rstrip(b"\n"),
    "int-question-id.jsonl": jsonl_bytes([row(question_id=7)]),
    "bool-correct.jsonl": jsonl_bytes([row(correct=True), row(sample_index=1, correct=False)]),
    "emoji-pair.jsonl": GOOD.replace(b"The answer", b"\\ud83d\\ude00 answer"),
    "unicode.jsonl": jsonl_bytes([row(output="\u00e9\u4e2d\u0627 \u2028 tab\t")]),
}


def hostile_count() -> int:
    return len(CASES)
