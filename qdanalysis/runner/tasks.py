"""Questions and tasks: question files, proposer prompts, grading.

A question file is JSONL with ``dataset, question_id, question, reference`` per line plus
task-specific fields: ``choices`` (a list, multiple choice), ``code`` and ``input`` (CRUXEval-O),
``task`` (overrides the file-wide task). A :class:`Task` turns a question into the proposer chat
messages and grades a response; built-ins are ``multiple_choice`` (MMLU-redux style letters),
``math`` (GSM8K, MATH; math-verify), ``crux`` (CRUXEval output prediction), ``crux_direct`` (the
same, answered as one completed assertion line) and ``open`` (AlpacaEval-style pairwise judgement
against the reference output). Custom tasks give a template
and the name of a registered scorer (:func:`register_scorer`).

Neighbours: :mod:`qdanalysis.runner.answers` extracts and scores; :mod:`qdanalysis.runner.moa` runs
the calls.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from . import prompts
from ._jsonl import json_lines
from .answers import Graded, answer_key, check_answer, extract_answer, strip_think

__all__ = [
    "TASKS",
    "Question",
    "Task",
    "get_task",
    "judge_messages",
    "load_questions",
    "parse_judgement",
    "register_scorer",
]

Scorer = Callable[[str, "Question"], Graded]


@dataclass(frozen=True, kw_only=True)
class Question:
    """One benchmark item."""

    dataset: str
    question_id: str
    question: str
    """The problem text (for multiple choice: the stem, without the choices)."""
    reference: str
    """Gold answer: a letter, a number or expression, a Python literal, or a reference output."""
    task: str
    """Name of the :class:`Task` that prompts and grades it."""
    choices: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other fields of the question file (e.g. ``code``, ``input``), passed to templates."""


@dataclass(frozen=True, kw_only=True)
class Task:
    """How to prompt for and grade one kind of question."""

    name: str
    template: str
    """A ``str.format`` template over ``question``, ``choices`` and the question's extra fields."""
    prompt_id: str
    scorer: str
    """Name of a registered scorer (see :func:`register_scorer`)."""
    system: str | None = None
    """Optional system message for proposers."""

    def messages(self, q: Question) -> list[dict[str, str]]:
        """The proposer chat messages for ``q``."""
        fields = dict(q.extra)
        fields["question"] = q.question
        fields["choices"] = "\n".join(
            f"- ({'ABCDEFGHIJ'[i]}) {c}" for i, c in enumerate(q.choices or ())
        )
        try:
            user = self.template.format(**fields)
        except KeyError as exc:
            raise DataError(
                f"task {self.name!r}: the template needs field {exc.args[0]!r}; question "
                f"{q.question_id!r} lacks it. Add it to the question file.",
                column=str(exc.args[0]),
            ) from exc
        out = [{"role": "user", "content": user}]
        if self.system:
            out.insert(0, {"role": "system", "content": self.system})
        return out

    @property
    def judged(self) -> bool:
        """True when grading needs a judge model (``open``)."""
        return self.scorer == "judge"

    def grade(self, text: str, q: Question) -> Graded:
        """Grade a response (exact tasks only; judged tasks go through :func:`judge_messages`)."""
        if self.judged:
            raise ConfigError(f"task {self.name!r} is judged: grade it with a judge model.")
        try:
            scorer = _SCORERS[self.scorer]
        except KeyError:
            raise ConfigError(
                f"task {self.name!r}: expected a scorer from {sorted(_SCORERS)}; got "
                f"{self.scorer!r}. Register it with register_scorer()."
            ) from None
        return scorer(text, q)


def _family_scorer(family: str, crux_mode: str = "literal") -> Scorer:
    def score(text: str, q: Question) -> Graded:
        ans, how = extract_answer(text, family=family)
        key = answer_key(ans, family=family, choices=q.choices)
        return Graded(
            answer=ans,
            answer_key=key,
            correct=check_answer(key, q.reference, family=family, crux_mode=crux_mode),
            extraction=how,
        )

    return score


def _crux_execute(text: str, q: Question) -> Graded:
    from .sandbox import run_python

    g = _family_scorer("crux")(text, q)
    if g.answer_key is None:
        return g
    code = q.extra.get("code")
    call = q.extra.get("input")
    if not isinstance(code, str) or not isinstance(call, str):
        raise DataError(
            f"question {q.question_id!r}: crux execution needs 'code' and 'input' fields.",
            column="code",
        )
    res = run_python(f"{code}\nassert {call} == {g.answer_key}\n", timeout_s=5)
    return Graded(
        answer=g.answer, answer_key=g.answer_key, correct=float(res.ok), extraction=g.extraction
    )


def _exact(text: str, q: Question) -> Graded:
    ans = strip_think(text)[0].strip() or None
    return Graded(
        answer=ans,
        answer_key=ans,
        correct=float(ans is not None and ans == q.reference.strip()),
        extraction=None if ans is None else "fallback",
    )


_SCORERS: dict[str, Scorer] = {
    "multiple_choice": _family_scorer("multiple_choice"),
    "math": _family_scorer("math"),
    "crux": _family_scorer("crux"),
    "crux_zeroeval": _family_scorer("crux", "zeroeval"),
    "crux_execute": _crux_execute,
    "exact": _exact,
}


def register_scorer(name: str, scorer: Scorer) -> None:
    """Register a scorer ``(response_text, question) -> Graded`` under ``name`` for custom tasks.

    The scorer must compute ``correct`` from ``answer_key`` alone (equal keys, equal scores).
    """
    if not name or name == "judge":
        raise ConfigError(f"register_scorer: expected a new non-empty name; got {name!r}.")
    _SCORERS[name] = scorer


#: Built-in tasks.
TASKS: dict[str, Task] = {
    "multiple_choice": Task(
        name="multiple_choice",
        template=prompts.ZEROEVAL_MCQA,
        prompt_id="zeroeval-mcqa-v1",
        scorer="multiple_choice",
    ),
    "math": Task(
        name="math", template=prompts.ZEROEVAL_OEQA, prompt_id="zeroeval-oeqa-v1", scorer="math"
    ),
    "crux": Task(
        name="crux",
        template=prompts.ZEROEVAL_OEQA.replace("{question}", prompts.CRUXEVAL_O),
        prompt_id="zeroeval-oeqa-cruxeval-o-v1",
        scorer="crux",
    ),
    "crux_direct": Task(
        name="crux_direct",
        template=prompts.CRUX_DIRECT_OURS,
        prompt_id="crux-direct-ours-v1",
        scorer="crux",
    ),
    "open": Task(name="open", template="{question}", prompt_id="plain-v1", scorer="judge"),
}


def get_task(name: str, *, scorer: str | None = None, template: str | None = None) -> Task:
    """A built-in task, optionally with another scorer or template (a custom task).

    Examples
    --------
    >>> get_task("crux", scorer="crux_execute").scorer
    'crux_execute'
    """
    if name in TASKS:
        base = TASKS[name]
    elif template is None or scorer is None:
        raise ConfigError(
            f"task: expected one of {sorted(TASKS)}, or a custom name with template and scorer; "
            f"got {name!r}."
        )
    else:
        base = Task(name=name, template="{question}", prompt_id="custom", scorer=scorer)
    if scorer is not None and scorer not in _SCORERS and scorer != "judge":
        raise ConfigError(f"task scorer: expected one of {sorted(_SCORERS)}; got {scorer!r}.")
    if template is not None:
        pid = "custom-" + _short_hash(template)
        base = Task(name=name, template=template, prompt_id=pid, scorer=base.scorer)
    if scorer is not None:
        base = Task(name=name, template=base.template, prompt_id=base.prompt_id, scorer=scorer)
    return base


def _short_hash(text: str) -> str:
    from .._hashing import content_hash

    return content_hash(text, length=8)


_REQUIRED = ("dataset", "question_id", "question", "reference")


def _check_fields(obj: Any, p: Path, lineno: int) -> None:
    """Required string fields (numbers become strings) and the choices list of one line."""
    if not isinstance(obj, dict):
        raise DataError("expected a JSON object.", path=p, line=lineno)
    for f in _REQUIRED:
        v = obj.get(f)
        if isinstance(v, int | float) and not isinstance(v, bool) and f != "question":
            v = obj[f] = str(v)
        if not isinstance(v, str) or (f != "reference" and not v.strip()):
            raise DataError(
                f"expected a non-empty string; got {v!r}. Every question needs {f!r}.",
                path=p,
                line=lineno,
                column=f,
            )
    choices = obj.get("choices")
    if choices is not None and (
        not isinstance(choices, list)
        or not 2 <= len(choices) <= 10
        or not all(isinstance(c, str) for c in choices)
    ):
        raise DataError(
            f"expected a list of 2-10 strings; got {choices!r}.",
            path=p,
            line=lineno,
            column="choices",
        )


def _task_name(obj: dict[str, Any], task: str | None, p: Path, lineno: int) -> str:
    """The line's task: its own field, else ``task``, else multiple choice when it has choices."""
    name = obj.get("task") or task or ("multiple_choice" if obj.get("choices") else None)
    if name is None:
        raise DataError(
            f"expected a 'task' field (or pass task=); got none. Valid tasks: {sorted(TASKS)}.",
            path=p,
            line=lineno,
            column="task",
        )
    if name not in TASKS:
        raise DataError(
            f"expected a task from {sorted(TASKS)}; got {name!r}.",
            path=p,
            line=lineno,
            column="task",
        )
    if name in ("crux", "crux_direct"):
        for f in ("code", "input"):
            if not isinstance(obj.get(f), str):
                raise DataError(
                    f"expected a string (crux questions need code and input); got {obj.get(f)!r}.",
                    path=p,
                    line=lineno,
                    column=f,
                )
    return str(name)


def _question(obj: Any, task: str | None, p: Path, lineno: int) -> Question:
    """One checked question line."""
    _check_fields(obj, p, lineno)
    name = _task_name(obj, task, p, lineno)
    choices = obj.get("choices")
    extra = {k: v for k, v in obj.items() if k not in (*_REQUIRED, "choices", "task")}
    return Question(
        dataset=obj["dataset"],
        question_id=obj["question_id"],
        question=obj["question"],
        reference=obj["reference"],
        task=name,
        choices=tuple(choices) if choices else None,
        extra=extra,
    )


def load_questions(
    path: str | Path, *, task: str | None = None, limit: int | None = None
) -> list[Question]:
    """Read a JSONL (optionally gzipped) question file.

    Parameters
    ----------
    path
        One JSON object per line with ``dataset, question_id, question, reference``.
    task
        Task name for lines without a ``task`` field; when None, lines with ``choices`` are
        ``multiple_choice`` and any other line must name its task.
    limit
        Keep only the first ``limit`` questions.

    Raises
    ------
    DataError
        Naming the file, line and field of the first problem.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("expected a question file (JSONL); it does not exist.", path=p)
    opener: Any = gzip.open if p.name.endswith(".gz") else open
    out: list[Question] = []
    seen: dict[tuple[str, str], int] = {}
    with opener(p, "rt", encoding="utf-8") as fh:
        for lineno, obj in json_lines(fh, path=p, what="one JSON object per line"):
            q = _question(obj, task, p, lineno)
            key = (q.dataset, q.question_id)
            if key in seen:
                raise DataError(
                    f"expected unique question ids; {key[1]!r} repeats line {seen[key]}.",
                    path=p,
                    line=lineno,
                    column="question_id",
                )
            seen[key] = lineno
            out.append(q)
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise DataError("expected at least one question; the file is empty.", path=p)
    return out


def judge_messages(q: Question, output: str, *, swap: bool = False) -> list[dict[str, str]]:
    """Messages asking a judge to compare ``output`` with the question's reference output.

    ``swap=True`` shows the reference as Response A (to average out position bias).
    """
    a, b = (q.reference, output) if swap else (output, q.reference)
    text = prompts.JUDGE_OURS.format(instruction=q.question, output_a=a, output_b=b)
    return [{"role": "user", "content": text}]


_VERDICT = re.compile(r"^\W*(A|B|tie)\b", re.IGNORECASE)


def parse_judgement(text: str, *, swap: bool = False) -> float | None:
    """Score of the candidate output from a judge reply: 1 win, 0.5 tie, 0 loss, None unparsed.

    Examples
    --------
    >>> parse_judgement("A\\nmore complete"), parse_judgement("B", swap=True), parse_judgement("?")
    (1.0, 1.0, None)
    """
    m = _VERDICT.search(strip_think(text)[0])
    if not m:
        return None
    v = m.group(1).upper()
    if v == "TIE":
        return 0.5
    win = "B" if swap else "A"
    return 1.0 if v == win else 0.0
