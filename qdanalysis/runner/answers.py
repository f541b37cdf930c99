"""Answer extraction, canonical answer keys and scoring, per task family.

Extraction follows the authors' ZeroEval fork (``eval_utils.py``): (1) the first balanced ``{...}``
block parsed as JSON (newlines removed), (2) a regex for ``"answer": ...`` allowing unquoted keys
and values, (3) ``\\boxed{...}``. Step (4) is **ours**: a family-specific fallback (``The answer
is X``, ``#### X``, a lone letter, the last number) for small models that ignore the JSON format;
:attr:`Graded.extraction` records which step succeeded, so analyses can drop fallbacks.

Every score is computed **from the answer key only**, so equal keys always have equal
``correct`` (the outputs-table contract that plurality voting relies on).

Neighbours: :mod:`qdanalysis.runner.tasks` picks the family per question;
:mod:`qdanalysis.runner.moa` grades every
row; :mod:`qdanalysis.runner.sandbox` executes CRUXEval checks when asked.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .._optional import require
from ..errors import ConfigError

__all__ = [
    "FAMILIES",
    "Graded",
    "answer_key",
    "check_answer",
    "extract_answer",
    "grade",
    "strip_think",
]

#: Task families with built-in extraction and scoring.
FAMILIES = ("multiple_choice", "math", "crux", "open")

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Graded:
    """One graded output."""

    answer: str | None
    """The extracted answer, or None."""
    answer_key: str | None
    """Canonical form of the answer; None when nothing was extracted."""
    correct: float
    """1.0/0.0 (exact families) or a judge score in [0, 1]."""
    extraction: str | None
    """Which step found the answer: ``json``, ``regex``, ``boxed``, ``fallback`` or None."""


def strip_think(text: str) -> tuple[str, bool]:
    """Remove ``<think>…</think>`` traces (an unclosed one runs to the end).

    Returns
    -------
    tuple of (str, bool)
        The text without traces, stripped, and whether anything was removed.

    Examples
    --------
    >>> strip_think("<think>hmm</think> 42")
    ('42', True)
    """
    out = _THINK.sub("", text)
    return (out.strip(), True) if out != text else (text, False)


def _balanced_block(text: str) -> str | None:
    start = text.find("{")
    while start != -1:
        depth = 0
        in_str = False
        esc = False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


_ANSWER_RE = re.compile(r"""["']?answer["']?\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^,}\n]+))""")
_BOXED_RE = re.compile(r"\\boxed\{")


def _boxed(text: str) -> str | None:
    found = None
    for m in _BOXED_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[m.end() : i - 1]
    return found


_NUM = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_FALLBACKS: dict[str, Sequence[re.Pattern[str]]] = {
    "multiple_choice": (
        re.compile(r"answer is:?\s*\(?([A-J])\b\)?", re.IGNORECASE),
        re.compile(r"answer:?\s*\(?([A-J])\b\)?", re.IGNORECASE),
        re.compile(r"^\s*\(?([A-J])\)?[.):]?\s*$", re.MULTILINE),
        re.compile(r"\(([A-J])\)"),
    ),
    "math": (
        re.compile(r"####\s*(" + _NUM + ")"),
        re.compile(r"answer is:?\s*\$?(" + _NUM + ")", re.IGNORECASE),
        re.compile(r"(" + _NUM + r")(?!.*\d)", re.DOTALL),
    ),
    "crux": (re.compile(r"assert\s+[^\n]*?==\s*([^\n]+)"),),
}


def extract_answer(text: str, *, family: str) -> tuple[str | None, str | None]:
    """Extract the final answer from a response.

    Parameters
    ----------
    text
        The response (``<think>`` traces are removed first).
    family
        One of :data:`FAMILIES`. ``"open"`` extracts nothing (judged on the whole output).

    Returns
    -------
    tuple of (str or None, str or None)
        The answer and the step that found it (``json``, ``regex``, ``boxed``, ``fallback``).

    Examples
    --------
    >>> extract_answer('```json\\n{"reasoning": "2+2", "answer": "4"}\\n```', family="math")
    ('4', 'json')
    >>> extract_answer('"answer": C', family="multiple_choice")
    ('C', 'regex')
    >>> extract_answer("So the answer is (B).", family="multiple_choice")
    ('B', 'fallback')
    """
    _check_family(family)
    if family == "open":
        return None, None
    text, _ = strip_think(text)
    block = _balanced_block(text)
    if block is not None:
        try:
            obj = json.loads(block.replace("\n", " "))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "answer" in obj and obj["answer"] is not None:
            ans = obj["answer"]
            ans = ans if isinstance(ans, str) else json.dumps(ans)
            if ans.strip() and ans.strip() != "___":
                return ans.strip(), "json"
    m = _ANSWER_RE.search(text)
    if m:
        ans = next(g for g in m.groups() if g is not None).strip().strip("`").strip()
        if ans and ans != "___":
            return ans, "regex"
    boxed = _boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip(), "boxed"
    for pat in _FALLBACKS.get(family, ()):
        m = pat.search(text)
        if m:
            return m.group(1).strip(), "fallback"
    return None, None


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ConfigError(f"answer family: expected one of {list(FAMILIES)}; got {family!r}.")


def _number_key(s: str) -> str | None:
    s = s.strip().replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = re.sub(r"(?<=\d),(?=\d{3})", "", s).rstrip(".").strip()
    s = re.sub(r"^\\text\{(.*)\}$", r"\1", s)
    nums = re.findall(_NUM, s)
    if len(nums) != 1 or re.search(r"[=/^*+]|\\frac|\\sqrt", s):
        return None
    rest = s.replace(nums[0], " ", 1)
    if re.search(r"\d", rest):
        return None
    try:
        d = Decimal(nums[0].replace(",", ""))
    except InvalidOperation:
        return None
    d = d.normalize()
    out = format(d, "f")
    return "0" if out in ("-0", "0") else out


def _literal_key(s: str) -> str:
    s = s.strip().strip("`").strip()
    if "==" in s:
        s = s.rsplit("==", 1)[1].strip()
    try:
        return repr(ast.literal_eval(s))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return s.strip("'\"")


_LETTER_RES = (
    re.compile(r"^\(([A-Ja-j])\)"),
    re.compile(r"^([A-J])(?:[.):\s]|$)"),
    re.compile(r"^([a-j])(?:[.):]|$)"),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"\b([A-J])\)"),
)


def answer_key(
    answer: str | None, *, family: str, choices: Sequence[str] | None = None
) -> str | None:
    """Canonical form of an answer: equal keys mean equal correctness.

    * ``multiple_choice``: the upper-case letter (``"(c) text"`` → ``"C"``); a choice's full
      text maps to its letter when ``choices`` are given.
    * ``math``: a plain number in canonical decimal form (``"$1,000.50"`` → ``"1000.5"``),
      else the answer with whitespace removed.
    * ``crux``: ``repr`` of the Python literal (right of ``==`` if present), else the text
      stripped of quotes.
    * ``open``: None (judged outputs have no key).

    Examples
    --------
    >>> answer_key("$1,000.50", family="math"), answer_key("(c) mall", family="multiple_choice")
    ('1000.5', 'C')
    >>> answer_key("[1, 2]", family="crux")
    '[1, 2]'
    """
    _check_family(family)
    if answer is None or family == "open":
        return None
    a = answer.strip()
    if not a:
        return None
    if family == "multiple_choice":
        for pat in _LETTER_RES:
            m = pat.search(a)
            if m:
                return m.group(1).upper()
        if choices:
            norm = [c.strip().lower() for c in choices]
            if a.lower() in norm:
                return "ABCDEFGHIJ"[norm.index(a.lower())]
        return None
    if family == "math":
        num = _number_key(a)
        return num if num is not None else re.sub(r"\s+", "", a).strip("$")
    return _literal_key(a)


def _math_equal(key: str, reference: str) -> bool:
    a, b = _number_key(key), _number_key(reference)
    if a is not None and b is not None:
        return a == b
    mv = require("math_verify", extra="llm", purpose="math answer equivalence")
    # signal-based timeouts fail off the main thread: disable them (callers bound the time).
    gold = mv.parse(f"${reference}$", parsing_timeout=None)
    pred = mv.parse(f"${key}$", parsing_timeout=None)
    if not gold or not pred:
        return key.strip() == reference.strip()
    return bool(mv.verify(gold, pred, timeout_seconds=None))


def check_answer(
    key: str | None, reference: str, *, family: str, crux_mode: str = "literal"
) -> float:
    """Score an answer key against the gold answer.

    Parameters
    ----------
    key
        An :func:`answer_key` (None scores 0).
    reference
        The gold answer (a letter, a math expression, a Python literal).
    family
        One of :data:`FAMILIES` except ``"open"`` (judged, see :mod:`qdanalysis.runner.tasks`).
    crux_mode
        ``"literal"`` (default): equal ``repr`` of ``ast.literal_eval`` on both sides;
        ``"zeroeval"``: exact string match after stripping quotes (the fork's scorer).

    Notes
    -----
    Math uses exact decimal comparison for plain numbers and ``math-verify`` otherwise (its
    signal timeouts are disabled, so it also works in worker threads).

    Examples
    --------
    >>> check_answer("18", "18.0", family="math")
    1.0
    >>> check_answer("0.5", "\\\\frac{1}{2}", family="math")
    1.0
    >>> check_answer("B", "A", family="multiple_choice")
    0.0
    """
    _check_family(family)
    if family == "open":
        raise ConfigError(
            "check_answer: family 'open' is judged; use qdanalysis.runner.tasks.judge()."
        )
    if key is None:
        return 0.0
    if family == "multiple_choice":
        ref = answer_key(reference, family=family) or reference.strip().upper()
        return float(key == ref)
    if family == "math":
        return float(_math_equal(key, reference))
    if crux_mode == "literal":
        return float(key == _literal_key(reference))
    if crux_mode == "zeroeval":
        return float(key.strip("'\"") == reference.strip().strip("'\""))
    raise ConfigError(f"crux_mode: expected 'literal' or 'zeroeval'; got {crux_mode!r}.")


def grade(
    text: str,
    reference: str,
    *,
    family: str,
    choices: Sequence[str] | None = None,
    crux_mode: str = "literal",
) -> Graded:
    """Extract, key and score one response (not for ``"open"``, which is judged).

    Examples
    --------
    >>> grade('{"reasoning": "..", "answer": "$18"}', "18", family="math")
    Graded(answer='$18', answer_key='18', correct=1.0, extraction='json')
    """
    answer, how = extract_answer(text, family=family)
    key = answer_key(answer, family=family, choices=choices)
    return Graded(
        answer=answer,
        answer_key=key,
        correct=check_answer(key, reference, family=family, crux_mode=crux_mode),
        extraction=how,
    )
