"""Prompt templates of the runner, as Python constants (no package data needed).

Each template has an id; ids land in the ``prompt_id`` column of every row, so a changed prompt
is a new id, never a silent edit. Sources:

* ``moa-v1``: the aggregate-and-synthesize system prompt of togethercomputer/MoA (``utils.py``),
  verbatim, assembled as ``inject_references_to_messages`` does.
* ``moa-zeroeval-v1``: the same paragraph as assembled in the authors' ZeroEval fork
  (one space before ``Responses from models:``, each reference as ``"\\n {i}. {ref}"``).
* ``zeroeval-mcqa-v1`` / ``zeroeval-oeqa-v1``: ZeroEval's multiple-choice and open-ended QA
  proposer templates (``src/templates/MCQA.py``, ``OEQA.py``), verbatim.
* ``cruxeval-o-v1``: CRUXEval's output-prediction instruction, wrapped in the OEQA template.
* ``usc-ours-v1`` and ``judge-ours-v1``: **ours**. The paper's Universal Self-Consistency prompt
  and its judge prompt were not recovered; these are written for this toolkit.

Neighbours: :mod:`qdanalysis.runner.tasks` formats proposer prompts; :mod:`qdanalysis.runner.moa`
builds the aggregator messages with :func:`inject_references`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...errors import ConfigError

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE",
    "CRUXEVAL_O",
    "CRUX_DIRECT_OURS",
    "JUDGE_OURS",
    "PROMPT_IDS",
    "USC_OURS",
    "ZEROEVAL_MCQA",
    "ZEROEVAL_OEQA",
    "aggregator_system_prompt",
    "inject_references",
    "usc_user_prompt",
]

#: The MoA aggregate-and-synthesize paragraph, verbatim.
AGGREGATE_AND_SYNTHESIZE = (
    "You have been provided with a set of responses from various open-source models to the latest "
    "user query. Your task is to synthesize these responses into a single, high-quality response. "
    "It is crucial to critically evaluate the information provided in these responses, recognizing "
    "that some of it may be biased or incorrect. Your response should not simply replicate the "
    "given answers but should offer a refined, accurate, and comprehensive reply to the "
    "instruction. Ensure your response is well-structured, coherent, and adheres to the highest "
    "standards of accuracy and reliability."
)

#: ZeroEval multiple-choice template (fields: question, choices).
ZEROEVAL_MCQA = (
    "\n## Question: \n\n{question}\n\n## Choices:\n\n{choices}\n\n## Instruction \n\n"
    "Please answer this question by first reasoning and then selecting the correct choice. \n"
    "Present your reasoning and solution in the following json format. \n"
    "Please show your choice in the `answer` field with only the choice letter, "
    'e.g.,`"answer": "C"`.\n\n```json\n{{\n    "reasoning": "___",\n    "answer": "___"\n}}\n```\n'
)

#: ZeroEval open-ended QA template (field: question); used for math and CRUXEval.
ZEROEVAL_OEQA = (
    "\n## Question: \n\n{question}\n\n\n## Instruction \n\n"
    "Please answer this question by first reasoning and then providing your answer.\n"
    "Present your reasoning and solution in the following json format. \n"
    'Please show your final answer in the `answer` field, e.g.,`"answer": "42"`.\n\n'
    '```json\n{{\n    "reasoning": "___",\n    "answer": "___"\n}}\n```\n'
)

#: CRUXEval-O question text (fields: code, input); goes into ZEROEVAL_OEQA's question.
CRUXEVAL_O = (
    "You are given a Python function and an assertion containing an input to the function. "
    "Complete the assertion with a literal (no unsimplified expressions, no function calls) "
    "containing the output when executing the provided code on the given input, even if the "
    "function is incorrect or incomplete.\n\n[PYTHON]\n{code}\nassert {input} == ??\n[/PYTHON]"
)

#: CRUXEval-O asking for the completed assertion alone (fields: code, input). OURS: small models
#: spend ZeroEval's JSON reasoning budget without reaching an answer; this asks for one line.
CRUX_DIRECT_OURS = (
    "Predict the output of this Python code.\n\n[PYTHON]\n{code}\nassert {input} == ??\n[/PYTHON]"
    "\n\nReply with the completed assertion only, in one line: assert {input} == <output>"
)

#: Universal Self-Consistency selection prompt. OURS: the paper's USC prompt was not recovered.
USC_OURS = (
    "I have generated the following responses to the question: {question}\n\n{responses}\n\n"
    "Evaluate these responses. Select the most consistent response based on majority consensus. "
    'Start your answer with "The most consistent response is Response X" (without quotes).'
)

#: Pairwise judge prompt for open-ended tasks. OURS (AlpacaEval's own judge prompt is not used).
JUDGE_OURS = (
    "You are comparing two responses to the same instruction. Decide which response is more "
    "helpful, correct and complete for the instruction.\n\n## Instruction\n{instruction}\n\n"
    "## Response A\n{output_a}\n\n## Response B\n{output_b}\n\n"
    'Reply with exactly one of "A", "B" or "tie" on the first line, then a short reason.'
)

#: Every prompt id the runner knows, with what it is.
PROMPT_IDS: Mapping[str, str] = {
    "moa-v1": "MoA aggregate-and-synthesize, togethercomputer/MoA assembly (verbatim)",
    "moa-zeroeval-v1": "MoA aggregate-and-synthesize, ZeroEval fork assembly (verbatim)",
    "usc-ours-v1": "Universal Self-Consistency selection (ours; paper prompt not recovered)",
    "zeroeval-mcqa-v1": "ZeroEval MCQA proposer template (verbatim)",
    "zeroeval-oeqa-v1": "ZeroEval OEQA proposer template (verbatim)",
    "crux-direct-ours-v1": "CRUXEval-O, the completed assertion in one line (ours)",
    "judge-ours-v1": "pairwise judge for open-ended tasks (ours)",
}


def aggregator_system_prompt(references: Sequence[str], *, style: str = "moa") -> str:
    r"""The aggregate-and-synthesize system text with numbered references.

    Parameters
    ----------
    references
        The responses shown, in order; numbered from 1.
    style
        ``"moa"`` (togethercomputer/MoA: blank line, ``"\n{i}. {ref}"``) or ``"zeroeval"``
        (one space, ``"\n {i}. {ref}"``).

    Examples
    --------
    >>> print(aggregator_system_prompt(["4", "5"]).split("\n\n")[-1])
    Responses from models:
    1. 4
    2. 5
    """
    if style == "moa":
        head, fmt = AGGREGATE_AND_SYNTHESIZE + "\n\nResponses from models:", "\n{i}. {ref}"
    elif style == "zeroeval":
        head, fmt = AGGREGATE_AND_SYNTHESIZE + " Responses from models:", "\n {i}. {ref}"
    else:
        raise ConfigError(f"prompt style: expected 'moa' or 'zeroeval'; got {style!r}.")
    return head + "".join(fmt.format(i=i + 1, ref=ref) for i, ref in enumerate(references))


def inject_references(
    messages: Sequence[Mapping[str, str]], references: Sequence[str], *, style: str = "moa"
) -> list[dict[str, str]]:
    """Put the references into the chat as MoA does.

    The system text is appended as ``"\\n\\n" + system`` to an existing first system message,
    else inserted as a new first message; the user turn is unchanged.

    Examples
    --------
    >>> m = inject_references([{"role": "user", "content": "q"}], ["a"])
    >>> [x["role"] for x in m], m[1]["content"]
    (['system', 'user'], 'q')
    """
    system = aggregator_system_prompt(references, style=style)
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = out[0]["content"] + "\n\n" + system
    else:
        out.insert(0, {"role": "system", "content": system})
    return out


def usc_user_prompt(question: str, responses: Sequence[str]) -> str:
    """The (ours) Universal Self-Consistency prompt listing ``Response 1`` … ``Response n``."""
    block = "\n\n".join(f"Response {i + 1}:\n{r}" for i, r in enumerate(responses))
    return USC_OURS.format(question=question, responses=block)
