"""Turning records and principles into backend prompts, in chat or raw-transcript form.

Chat form: the few-shot examples become earlier turns of the same conversation, and the
record's exchange follows. Raw form is the paper's plain transcript for base models:
``Human:``/``Assistant:`` then ``CritiqueRequest:``/``Critique:`` and
``RevisionRequest:``/``Revision:`` sections separated by blank lines.
"""

from __future__ import annotations

from caitool.backends.base import Prompt
from caitool.constitution import ComparisonExample, ComparisonPrinciple, Constitution, Principle

EXAMPLE_SEPARATOR = "\n\n-----\n\n"
LABELS = {"user": "Human", "assistant": "Assistant", "system": "System"}
# Where a raw completion must stop: the model starting the next section by itself.
RESPONSE_STOP = ["\n\nHuman:", "\n\nCritiqueRequest:", "\n\n-----"]
CRITIQUE_STOP = ["\n\nRevisionRequest:", "\n\nRevision:", *RESPONSE_STOP]
REVISION_STOP = ["\n\nCritiqueRequest:", *RESPONSE_STOP]
ANSWER_CUE = "The answer is:"
COT_CUE = "Let's think step by step:"
COT_ANSWER_CUE = "So the answer is:"
OPTION_LETTERS = ("A", "B")


def transcript(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{LABELS[m['role']]}: {m['content']}" for m in messages)


def response_prompt(messages: list[dict[str, str]], fmt: str) -> tuple[Prompt, list[str]]:
    """The request for an answer to the conversation, and its stop strings."""
    if fmt == "chat":
        return Prompt.chat(messages), []
    return Prompt.raw(transcript(messages) + "\n\nAssistant:"), list(RESPONSE_STOP)


def _chat_example(example) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": example.prompt},
        {"role": "assistant", "content": example.response},
        {"role": "user", "content": example.critique_request},
        {"role": "assistant", "content": example.critique},
        {"role": "user", "content": example.revision_request},
        {"role": "assistant", "content": example.revision},
    ]


def _raw_example(example) -> str:
    return (
        f"Human: {example.prompt}\n\nAssistant: {example.response}\n\n"
        f"CritiqueRequest: {example.critique_request}\n\nCritique: {example.critique}\n\n"
        f"RevisionRequest: {example.revision_request}\n\nRevision: {example.revision}"
    )


def critique_prompt(constitution: Constitution, messages: list[dict[str, str]], response: str,
                    principle: Principle, fmt: str,
                    critique: str | None = None) -> tuple[Prompt, list[str]]:
    """Ask for a critique (``critique`` None) or, given the critique, for the revision."""
    examples = constitution.critique_examples
    if fmt == "chat":
        turns = [turn for example in examples for turn in _chat_example(example)]
        turns += messages + [{"role": "assistant", "content": response},
                             {"role": "user", "content": principle.critique}]
        if critique is not None:
            turns += [{"role": "assistant", "content": critique},
                      {"role": "user", "content": principle.revision}]
        return Prompt.chat(turns), []
    shots = "".join(_raw_example(e) + EXAMPLE_SEPARATOR for e in examples)
    text = (f"{shots}{transcript(messages)}\n\nAssistant: {response}\n\n"
            f"CritiqueRequest: {principle.critique}\n\nCritique:")
    if critique is None:
        return Prompt.raw(text), list(CRITIQUE_STOP)
    text += f" {critique}\n\nRevisionRequest: {principle.revision}\n\nRevision:"
    return Prompt.raw(text), list(REVISION_STOP)


def comparison_question(messages: list[dict[str, str]], question: str, first: str,
                        second: str) -> str:
    """The multiple-choice question a judge answers with (A) or (B)."""
    return (
        "Consider the following conversation between a human and an assistant:\n\n"
        f"{transcript(messages)}\n\n{question}\n"
        f"Options:\n(A) {first}\n(B) {second}"
    )


def _example_turns(example: ComparisonExample, index: int) -> tuple[str, str]:
    """A few-shot comparison, with the better response alternating between (A) and (B)
    so the examples themselves teach no position preference."""
    better_first = index % 2 == 0
    first, second = (example.better, example.worse) if better_first else (example.worse, example.better)
    wants_better = example.direction != "worse"
    letter = "A" if better_first == wants_better else "B"
    question = comparison_question([{"role": "user", "content": example.prompt}],
                                   example.question, first, second)
    return question, f"{ANSWER_CUE} ({letter})"


def comparison_prompt(constitution: Constitution, messages: list[dict[str, str]],
                      principle: ComparisonPrinciple, first: str, second: str, fmt: str,
                      reasoning: str | None = None, cot: bool = False) -> Prompt:
    """The judge's prompt, ending at the answer cue (or, with ``cot`` and no reasoning yet,
    at the cue that invites step-by-step reasoning)."""
    question = comparison_question(messages, principle.question, first, second)
    shots = [_example_turns(e, i) for i, e in enumerate(constitution.comparison_examples)]
    if cot:
        cue = COT_CUE if reasoning is None else f"{COT_CUE} {reasoning.strip()}\n{COT_ANSWER_CUE}"
    else:
        cue = ANSWER_CUE
    if fmt == "chat":
        turns = []
        for shot_question, answer in shots:
            turns += [{"role": "user", "content": shot_question},
                      {"role": "assistant", "content": answer}]
        turns.append({"role": "user", "content": question})
        return Prompt.chat(turns, assistant_prefix=cue)
    text = "".join(f"{q}\n{a}{EXAMPLE_SEPARATOR}" for q, a in shots)
    return Prompt.raw(f"{text}{question}\n{cue}")


def option_continuations() -> list[str]:
    return [f" ({letter})" for letter in OPTION_LETTERS]
