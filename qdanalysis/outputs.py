"""The outputs table: schema, loading and validation.

One row per (question, output): proposer outputs from downloaded logs or from our own runs, and
aggregator outputs of our runs, all in one tidy long table. Every analysis reads this table, so
every reader here checks it strictly and says where a problem is and how to fix it.

Neighbours: :mod:`qdanalysis.configs` builds configurations over the proposer rows;
:mod:`qdanalysis.runner.store` writes runner rows in this schema.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, DataWarning

__all__ = [
    "KEY_COLUMNS",
    "OPTIONAL_COLUMNS",
    "OUTPUTS_SCHEMA",
    "PROVENANCE_COLUMNS",
    "REQUIRED_COLUMNS",
    "RUN_KEY_COLUMNS",
    "add_proposer_column",
    "expand_output_paths",
    "find_output_files",
    "is_outputs_file",
    "load_outputs",
    "proposer_rows",
    "validate_outputs",
]

#: Column name -> (kind, meaning). ``kind`` is one of ``str``, ``int``, ``float``, ``score``.
OUTPUTS_SCHEMA: dict[str, tuple[str, str]] = {
    "dataset": ("str", "benchmark the question belongs to"),
    "question_id": ("str", "id of the question within its dataset"),
    "question": ("str", "the problem text"),
    "reference": ("str", "gold answer"),
    "model": ("str", "the model that produced the output"),
    "temperature": ("float", "sampling temperature"),
    "sample_index": ("int", "0-based index of the output within (question, model)"),
    "output": ("str", "the full response"),
    "answer": ("str", "answer extracted from the output, or null"),
    "answer_key": ("str", "canonical form of the answer; equal keys imply equal correctness"),
    "correct": ("score", "1/0 for exact tasks, a score in [0, 1] for judged ones"),
}
REQUIRED_COLUMNS: tuple[str, ...] = (
    "dataset",
    "question_id",
    "model",
    "sample_index",
    "output",
    "correct",
)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c for c in OUTPUTS_SCHEMA if c not in REQUIRED_COLUMNS)
OPTIONAL_TEXT_COLUMNS: tuple[str, ...] = ("question", "reference", "answer", "answer_key")
#: Unique key of a proposer output.
KEY_COLUMNS: tuple[str, ...] = ("dataset", "question_id", "model", "sample_index")
#: Extra key columns of runner rows (aggregator and intermediate-layer outputs), when present.
RUN_KEY_COLUMNS: tuple[str, ...] = ("config_id", "role", "layer", "step")
#: Columns that record how a call went (when, how fast, whether from a cache), not what it
#: produced: two copies of one output (e.g. in two run stores of one proposer pool) may differ
#: in them and are still one output.
PROVENANCE_COLUMNS: tuple[str, ...] = ("created_at", "latency_s", "cached")

_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".parquet", ".pq", ".csv", ".csv.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suf):
            return suf
    return path.suffix.lower()


def is_outputs_file(path: str | Path) -> bool:
    """Whether ``path`` has the suffix of an outputs table (JSONL, Parquet or CSV, maybe gzipped).

    Examples
    --------
    >>> is_outputs_file("runs/a/outputs.jsonl.gz"), is_outputs_file("study.toml")
    (True, False)
    """
    return _suffix(Path(path)) in _SUFFIXES


#: Files beside ``outputs.jsonl`` that mark a run directory (written by ``qdanalysis.run``):
#: the run store's append-only log and the configurations.
_RUN_DIR_MARKERS = ("rows.jsonl", "configs.jsonl")


def find_output_files(directory: str | Path) -> list[Path]:
    """List the outputs files (JSONL, JSONL.gz, Parquet, CSV) directly inside ``directory``.

    A run directory (``outputs.jsonl`` beside the store's ``rows.jsonl`` or a
    ``configs.jsonl``) gives its ``outputs.jsonl`` alone: the other two are not outputs tables
    (``rows.jsonl`` also keeps failed and superseded calls).

    Raises
    ------
    DataError
        If the directory does not exist or holds no such file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(
            "expected a directory of outputs files; it does not exist. "
            "Pass the outputs files themselves, or the directory that holds them.",
            path=d,
        )
    outputs = d / "outputs.jsonl"
    if outputs.is_file() and any((d / m).is_file() for m in _RUN_DIR_MARKERS):
        return [outputs]
    files = sorted(p for p in d.iterdir() if p.is_file() and _suffix(p) in _SUFFIXES)
    if not files:
        raise DataError(
            f"expected at least one outputs file ({', '.join(_SUFFIXES)}); found none.",
            path=d,
        )
    return files


_BOM = b"\xef\xbb\xbf"
#: A JSON escape of a UTF-16 surrogate: the only way a JSON line can yield a string that is not
#: valid Unicode (a lone surrogate), which no text store, hash or Arrow column accepts.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1]
        raise DataError(
            f"expected UTF-8 text; got the byte {bad!r} at byte {exc.start + 1} of the line, "
            "which is not UTF-8 (Latin-1 or Windows-1252?). Re-encode the file as UTF-8, e.g. "
            "`iconv -f latin1 -t utf-8`.",
            path=path,
            line=lineno,
        ) from exc


def _lone_surrogate_field(obj: dict[str, Any]) -> str | None:
    """The first top-level field holding (at any depth) a string that is not valid Unicode."""

    def bad(v: Any) -> bool:
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
            return False
        if isinstance(v, dict):
            return any(bad(k) or bad(x) for k, x in v.items())
        if isinstance(v, list):
            return any(bad(x) for x in v)
        return False

    for k, v in obj.items():
        if bad(k) or bad(v):
            return str(k.encode("utf-8", "backslashreplace").decode())
    return None


def _read_jsonl(path: Path) -> pd.DataFrame:
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]  # a UTF-8 byte-order mark is harmless: skip it
                text = _decode_line(raw, path, lineno).strip()
                if not text:
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"expected one JSON object per line; got malformed JSON ({exc.msg} at "
                        f"character {exc.pos + 1}): {text[:80]!r}. Fix or delete this line.",
                        path=path,
                        line=lineno,
                    ) from exc
                except RecursionError as exc:
                    raise DataError(
                        f"expected one flat JSON object per line; got values nested too deeply "
                        f"to read: {text[:80]!r}. Flatten or delete this line.",
                        path=path,
                        line=lineno,
                    ) from exc
                if not isinstance(obj, dict):
                    raise DataError(
                        f"expected a JSON object per line; got {type(obj).__name__} "
                        f"{text[:80]!r}. Each line must be one {{...}} record.",
                        path=path,
                        line=lineno,
                    )
                if _SURROGATE_ESCAPE.search(raw):
                    col = _lone_surrogate_field(obj)
                    if col is not None:
                        raise DataError(
                            "expected valid Unicode text; got a lone UTF-16 surrogate escape "
                            "(\\ud800-\\udfff without its pair). Remove or replace it.",
                            path=path,
                            line=lineno,
                            column=col,
                        )
                records.append(obj)
                lines.append(lineno)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"could not read the file ({exc}). Check that it is a complete, uncorrupted file.",
            path=path,
        ) from exc
    df = pd.DataFrame.from_records(records)
    df["_line"] = lines
    return df


def _first_non_utf8_line(path: Path) -> tuple[int, int] | None:
    """(line, byte within the line) of the first bytes that are not UTF-8, if any."""
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return lineno, exc.start + 1
    return None


def _read_csv(path: Path) -> pd.DataFrame:
    # Only an empty cell is null: pandas' default would also turn the texts "NA", "None", "null",
    # "nan" … into nulls, silently erasing real answers and outputs.
    text_cols = {c: object for c in ("dataset", "question_id", "model", *OPTIONAL_TEXT_COLUMNS)}
    text_cols["output"] = object
    try:
        df = pd.read_csv(
            path,
            keep_default_na=False,
            na_values=[""],
            dtype=text_cols,
            encoding="utf-8-sig",
        )
        return _csv_numbers(df)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except UnicodeDecodeError as exc:
        where = _first_non_utf8_line(path)
        line = where[0] if where else None
        at = f" at byte {where[1]} of the line" if where else ""
        raise DataError(
            f"expected UTF-8 text; got bytes that are not UTF-8{at} (Latin-1 or "
            "Windows-1252?). Re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`.",
            path=path,
            line=line,
        ) from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"could not read the file ({exc}). Check that it is a complete, uncorrupted file.",
            path=path,
        ) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        m = re.search(r"\bline (\d+)", detail)
        raise DataError(
            f"could not parse CSV ({detail}). Check quoting and the number of fields per row.",
            path=path,
            line=int(m.group(1)) if m else None,
        ) from exc


def _csv_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Turn numeric-looking texts of the number columns into numbers, cell by cell.

    One bad cell makes pandas read a whole CSV column as text; converting the cells that are
    numbers lets validation point at the bad cell rather than at the first row.
    """

    def conv(v: Any) -> Any:
        if isinstance(v, str):
            try:
                x = float(v)
            except ValueError:
                return v
            return x if math.isfinite(x) else v
        return v

    for col in ("sample_index", "correct", "temperature"):
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = pd.Series([conv(v) for v in df[col]], index=df.index, dtype=object)
    return df


def _read_one(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError("expected an outputs file; it does not exist. Check the path.", path=path)
    suf = _suffix(path)
    if suf in (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson"):
        df = _read_jsonl(path)
    elif suf in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types
            raise DataError(
                f"could not read Parquet ({type(exc).__name__}: {exc}). "
                "Check the file is a complete Parquet file.",
                path=path,
            ) from exc
        df["_line"] = np.arange(len(df)) + 1
        df.attrs["line_kind"] = "row"
    elif suf in (".csv", ".csv.gz"):
        df = _read_csv(path)
        df["_line"] = np.arange(len(df)) + 2  # line 1 is the header
    else:
        raise DataError(
            f"expected one of the suffixes {', '.join(_SUFFIXES)}; got {path.name!r}. "
            "Convert the file to JSONL, Parquet or CSV.",
            path=path,
        )
    if len(df) == 0:
        raise DataError(
            "expected at least one row; the file is empty. Remove it from the inputs.", path=path
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        present = [c for c in df.columns if not str(c).startswith("_")]
        raise DataError(
            f"expected the columns {list(REQUIRED_COLUMNS)}; missing {missing}. Present: "
            f"{present}. Rename or add the missing columns.",
            path=path,
        )
    df["_source"] = str(path)
    return df


def expand_output_paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The outputs files ``paths`` name: files as given, directories by :func:`find_output_files`.

    The files :func:`load_outputs` reads, in that order, for callers that record them.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(find_output_files(p) if p.is_dir() else [p])
    return files


def load_outputs(
    paths: str | Path | Iterable[str | Path], *, validate: bool = True
) -> pd.DataFrame:
    """Read one or more outputs files and return one validated outputs table.

    Parameters
    ----------
    paths
        A file, a directory (every outputs file directly inside it) or several of either.
        JSONL (optionally gzipped), Parquet and CSV are read.
    validate
        Check the table with :func:`validate_outputs` (default). Errors name the file and line.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`OUTPUTS_SCHEMA` (optional ones filled with nulls when absent), any
        extra columns of the inputs unchanged, in input order. The row key is
        ``(dataset, question_id, model, sample_index)`` for proposer rows.

    Raises
    ------
    DataError
        For any malformed input; the message names the file, the line and the column.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "o.jsonl"
    >>> _ = p.write_text('{"dataset": "d", "question_id": "q1", "model": "m", '
    ...                  '"sample_index": 0, "output": "4", "correct": 1}\\n')
    >>> load_outputs(p)[["question_id", "model", "correct"]]
      question_id model  correct
    0          q1     m      1.0
    """
    files = expand_output_paths(paths)
    if not files:
        raise DataError(
            "load_outputs: expected at least one outputs file in paths; got none. "
            "Pass a file or a directory."
        )
    frames = [_read_one(f) for f in files]
    df = pd.concat(frames, ignore_index=True, sort=False)
    if validate:
        df = validate_outputs(df)
    return df


def _where(df: pd.DataFrame, idx: Any) -> dict[str, Any]:
    if "_source" in df.columns:
        line = df.at[idx, "_line"]
        return {"path": df.at[idx, "_source"], "line": int(line)}
    return {"path": None, "line": None}


def _row_label(df: pd.DataFrame, idx: Any) -> str:
    return "" if "_source" in df.columns else f"row {idx}: "


def _check_str(df: pd.DataFrame, col: str, *, nullable: bool) -> None:
    """Strings (or integers, or for nullable text columns also finite numbers) only."""
    s = df[col]
    numbers_ok = (int, np.integer, float, np.floating) if nullable else (int, np.integer)
    for idx, v in s.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if nullable:
                continue
            raise DataError(
                f"{_row_label(df, idx)}expected a non-empty string; got null. "
                f"Every row needs a {col!r}.",
                column=col,
                **_where(df, idx),
            )
        bad_number = isinstance(v, float | np.floating) and not math.isfinite(v)
        if isinstance(v, bool) or bad_number or not isinstance(v, (str, *numbers_ok)):
            raise DataError(
                f"{_row_label(df, idx)}expected a string; got {type(v).__name__} {v!r}. "
                f"Store {col!r} as text.",
                column=col,
                **_where(df, idx),
            )
        if not nullable and str(v).strip() == "":
            raise DataError(
                f"{_row_label(df, idx)}expected a non-empty string; got {v!r}. "
                f"Every row needs a {col!r}.",
                column=col,
                **_where(df, idx),
            )


_MAX_INDEX = 2**53


def _to_number(df: pd.DataFrame, col: str, *, integer: bool, nullable: bool) -> pd.Series:
    out = np.empty(len(df), dtype=float)
    for i, (idx, v) in enumerate(df[col].items()):
        ok = True
        val = math.nan  # only read when ok, i.e. after a branch below sets it from ``v``
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if nullable:
                out[i] = np.nan
                continue
            ok = False
        elif isinstance(v, bool | np.bool_):
            ok = not integer  # true/false is a score, never an index
            val = float(v)
        elif isinstance(v, int | float | np.integer | np.floating):
            val = float(v)
        else:
            ok = False
        if ok and (not math.isfinite(val) or (integer and (not val.is_integer() or val < 0))):
            ok = False
        if ok and integer and val > _MAX_INDEX:
            ok = False  # beyond 2**53 floats (and int64 casts) stop being exact
        if not ok:
            want = "a non-negative integer below 2**53" if integer else "a finite number"
            raise DataError(
                f"{_row_label(df, idx)}expected {want}; got {v!r}. "
                f"Write {col!r} as a number, not text or NaN.",
                column=col,
                **_where(df, idx),
            )
        out[i] = val
    return pd.Series(out, index=df.index)


def validate_outputs(df: pd.DataFrame) -> pd.DataFrame:
    """Check an outputs table and return it with canonical dtypes.

    Checks: required columns present; string, integer and score types; ``correct`` in [0, 1];
    one row per row key; one ``question`` text per ``(dataset, question_id)``. Empty outputs
    are kept but reported with a :class:`~qdanalysis.errors.DataWarning`.

    The row key is :data:`KEY_COLUMNS` plus those of :data:`RUN_KEY_COLUMNS` present. Rows with
    one key must be copies of one output: a row equal to an earlier one with its key in every
    column but :data:`PROVENANCE_COLUMNS` (e.g. the shared proposer samples of two run stores of
    one pool, concatenated or loaded together) is kept once, with a ``DataWarning``; rows with one
    key that differ elsewhere are an error naming both.

    Parameters
    ----------
    df
        An outputs table. Columns ``_source`` and ``_line`` (set by :func:`load_outputs`) make
        errors name the file and line; they are dropped from the result.

    Returns
    -------
    pandas.DataFrame
        A copy with ``sample_index`` as int64, ``correct`` and ``temperature`` as float64, the id
        and text columns as object (str or None), and every optional schema column present; the
        first of each set of copies only, in input order, with a fresh index.

    Raises
    ------
    DataError
        On the first problem found, naming the column (and file and line when known).
    """
    _check_columns(df)
    # Rows are named by their index label in errors: make labels unique if they are not.
    df = df.copy() if df.index.is_unique else df.reset_index(drop=True)
    _check_required_present(df)
    for col in ("dataset", "question_id", "model"):
        _check_str(df, col, nullable=False)
        df[col] = df[col].astype(str)
    df["sample_index"] = _to_number(df, "sample_index", integer=True, nullable=False).astype(
        np.int64
    )
    df["correct"] = _scores(df)
    df["output"] = _output_texts(df)
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col == "temperature" else None
    for col in OPTIONAL_TEXT_COLUMNS:
        _check_str(df, col, nullable=True)
        # object dtype keeps None as None (pandas 3 would infer its str dtype and turn it to NaN)
        df[col] = pd.Series(
            [None if _is_null(v) else str(v) for v in df[col]], index=df.index, dtype=object
        )
    df["temperature"] = _to_number(df, "temperature", integer=False, nullable=True)
    df = _drop_copies(df)
    n_empty = int((df["output"].str.strip() == "").sum())
    if n_empty:
        warnings.warn(
            f"{n_empty} of {len(df)} outputs are empty; they are kept (their embedding is that of "
            "an empty text, which lowers diversity). Drop them first if they are failures.",
            DataWarning,
            stacklevel=2,
        )
    _check_one_question(df)
    return df.drop(columns=[c for c in ("_source", "_line") if c in df.columns]).reset_index(
        drop=True
    )


def _check_columns(df: pd.DataFrame) -> None:
    """A non-empty DataFrame with every required column."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame; got {type(df).__name__}.")
    if len(df) == 0:
        raise DataError("expected at least one row; the outputs table is empty.")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        src = sorted(set(df["_source"])) if "_source" in df.columns else []
        where = f"{', '.join(src)}: " if src else ""
        present = [c for c in df.columns if not str(c).startswith("_")]
        raise DataError(
            f"{where}expected the columns {list(REQUIRED_COLUMNS)}; missing {missing}. "
            f"Present: {present}. Rename or add the missing columns."
        )


def _check_required_present(df: pd.DataFrame) -> None:
    """In a table read from files, a required field missing in some rows is an error there."""
    if "_source" not in df.columns:
        return
    # A column missing in some rows of a JSONL file shows up as null: report the row. A null
    # output is an empty response (see _output_texts), not a missing field.
    for col in REQUIRED_COLUMNS:
        bad = df[col].isna()
        if col != "output" and bad.any():
            raise DataError(
                f"expected a value; the field is missing, null or NaN. Every row needs {col!r}.",
                column=col,
                **_where(df, bad.idxmax()),
            )


def _scores(df: pd.DataFrame) -> pd.Series:
    """``correct`` as float64 in [0, 1]."""
    correct = _to_number(df, "correct", integer=False, nullable=False)
    bad = (correct < 0) | (correct > 1)
    if bad.any():
        idx = bad.idxmax()
        raise DataError(
            f"{_row_label(df, idx)}expected 0/1 or a score in [0, 1]; got "
            f"{df.at[idx, 'correct']!r}. Map labels or percentages to [0, 1] first.",
            column="correct",
            **_where(df, idx),
        )
    return correct.astype(np.float64)


def _output_texts(df: pd.DataFrame) -> pd.Series:
    """``output`` as object strings; null means an empty response."""
    # An all-null column arrives as float64, which cannot hold "": build an object column.
    texts: list[str] = []
    for idx, v in df["output"].items():
        if _is_null(v):
            texts.append("")
        elif isinstance(v, str):
            texts.append(v)
        else:
            raise DataError(
                f"{_row_label(df, idx)}expected the response text; got "
                f"{type(v).__name__} {v!r}. Store 'output' as a string.",
                column="output",
                **_where(df, idx),
            )
    return pd.Series(texts, index=df.index, dtype=object)


def _is_null(v: Any) -> bool:
    """True for None, NaN, pandas.NA and NaT; False for any other value (lists included)."""
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _json_default(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _canonical(v: Any) -> str:
    """One text per value, equal for equal values, nulls included (a key or content token)."""
    if _is_null(v):
        return "null"
    return json.dumps(v, sort_keys=True, default=_json_default)


def _where_text(df: pd.DataFrame, idx: Any) -> str:
    if "_source" in df.columns:
        return f"{df.at[idx, '_source']} line {int(df.at[idx, '_line'])}"
    return f"row {idx}"


def _difference(a: str, b: str, width: int = 30) -> str:
    """Where two texts first differ: ``'…there…' there, '…here…' here``."""
    start = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    lo = max(0, start - width // 2)

    def cut(t: str) -> str:
        return ("…" if lo else "") + t[lo : lo + width] + ("…" if len(t) > lo + width else "")

    return f"{cut(a)} there, {cut(b)} here"


def _key_text(values: pd.Series) -> pd.Series:
    """Each value as a text that compares equal for equal values, a null included.

    (Under pandas 3, ``astype(str)`` turns nulls, such as the ``config_id`` and ``step`` of
    proposer rows, into NaN, and NaN equals nothing: rows with one key would not match.)
    """
    obj = values.astype(object)
    return ("=" + obj.astype(str)).where(obj.notna(), "null").astype(object)


def _same(a: Any, b: Any) -> bool:
    """Whether two cells hold one value (nulls equal; lists, dicts and arrays by content)."""
    if _is_null(a) or _is_null(b):
        return _is_null(a) and _is_null(b)
    try:
        eq = a == b
        if isinstance(eq, bool | np.bool_):
            return bool(eq)
    except (TypeError, ValueError):
        pass
    return _canonical(a) == _canonical(b)


def _drop_copies(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the first of each set of rows with one key; raise if two of them differ.

    Rows with one key may differ only in :data:`PROVENANCE_COLUMNS`; the first difference
    elsewhere, in row order, is reported with both rows' places.
    """
    key = list(KEY_COLUMNS) + [c for c in RUN_KEY_COLUMNS if c in df.columns]
    keys = pd.DataFrame({c: _key_text(df[c]) for c in key}, index=df.index)
    later = keys.duplicated(keep="first")
    if not later.any():
        return df
    group = keys.groupby(key, sort=False).ngroup()
    first_of = pd.Series(df.index, index=df.index).groupby(group).transform("first")
    copies, firsts = df.index[later], first_of[later].to_numpy()
    content = [c for c in df.columns if c not in (*key, *PROVENANCE_COLUMNS, "_source", "_line")]
    bad: tuple[int, str] | None = None
    for col in content:
        a = df.loc[firsts, col].to_numpy(dtype=object)
        b = df.loc[copies, col].to_numpy(dtype=object)
        stop = len(b) if bad is None else bad[0]
        j = next((j for j in range(stop) if not _same(a[j], b[j])), None)
        if j is not None:
            bad = (j, col)
    if bad is not None:
        j, col = bad
        idx, first = copies[j], firsts[j]
        there, here = _canonical(df.at[first, col]), _canonical(df.at[idx, col])
        vals = {c: json.loads(_canonical(df.at[idx, c])) for c in KEY_COLUMNS}
        raise DataError(
            f"{_row_label(df, idx)}expected one row per {key}; got a duplicate of "
            f"{_where_text(df, first)} with another {col!r} ({_difference(there, here)}): "
            f"{vals}. Remove one of the two, or give this one another sample_index "
            "(or config_id).",
            column="sample_index",
            **_where(df, idx),
        )
    warnings.warn(
        f"{len(copies)} of {len(df)} rows repeat an earlier row with the same key and content "
        f"(e.g. {_where_text(df, copies[0])} repeats {_where_text(df, firsts[0])}); each output "
        "is kept once. Loading two run stores that share proposer samples does this.",
        DataWarning,
        stacklevel=3,
    )
    return df.loc[~later]


def _check_one_question(df: pd.DataFrame) -> None:
    """One question text per (dataset, question_id)."""
    q = df.loc[df["question"].notna(), ["dataset", "question_id", "question"]]
    nq = q.groupby(["dataset", "question_id"], sort=False)["question"].nunique()
    if (nq > 1).any():
        ds, qid = nq.index[int(np.argmax(nq.to_numpy() > 1))]
        rows = df[(df["dataset"] == ds) & (df["question_id"] == qid)]
        idx = rows.index[rows["question"] != rows["question"].iloc[0]][0]
        raise DataError(
            f"{_row_label(df, idx)}expected one question text per (dataset, question_id); "
            f"question_id {qid!r} of {ds!r} has {int(nq.max())} different texts. "
            "Give different questions different ids.",
            column="question",
            **_where(df, idx),
        )


def proposer_rows(outputs: pd.DataFrame) -> pd.DataFrame:
    """Return the rows that can fill proposer slots: not aggregator rows, first layer only.

    A row is a proposer row when it has no ``role`` or its role is ``"proposer"``, and its
    ``layer`` (when the column exists) is null or 0.
    """
    mask = pd.Series(True, index=outputs.index)
    if "role" in outputs.columns:
        mask &= outputs["role"].isna() | (outputs["role"] == "proposer")
    if "layer" in outputs.columns:
        mask &= outputs["layer"].isna() | (outputs["layer"] == 0)
    if "status" in outputs.columns:
        mask &= outputs["status"].isna() | (outputs["status"] == "ok")
    return outputs.loc[mask]


def add_proposer_column(
    outputs: pd.DataFrame, proposer_key: Sequence[str] = ("model",), *, sep: str = "|"
) -> pd.DataFrame:
    """Add the ``proposer`` column: the proposer type of each row.

    Parameters
    ----------
    outputs
        An outputs table.
    proposer_key
        Columns whose values, joined by ``sep``, name a row's proposer type. ``("model",)`` (the
        default) makes each model a type; ``("model", "prompt_variant")`` makes each
        model-and-prompt pair one.

    Raises
    ------
    DataError
        If a key column is missing or null in some row.
    """
    key = list(proposer_key)
    if not key:
        raise DataError("proposer key: expected at least one column name; got none.")
    missing = [c for c in key if c not in outputs.columns]
    if missing:
        raise DataError(
            f"proposer key: expected columns {key}; missing {missing}. "
            f"Present: {[c for c in outputs.columns]}. Choose proposer_key from these.",
        )
    for c in key:
        if outputs[c].isna().any():
            n = int(outputs[c].isna().sum())
            raise DataError(
                f"proposer key: expected a value in every row; {n} rows have none. "
                "Fill the column or choose another proposer_key.",
                column=c,
            )
    out = outputs.copy()
    if len(key) == 1:
        out["proposer"] = out[key[0]].astype(str)
    else:
        out["proposer"] = out[key].astype(str).agg(sep.join, axis=1)
    return out
