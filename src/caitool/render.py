"""Prompt formats, in one place: what a model is shown, for every step and every backend.

Two formats. ``chat``: messages rendered by the model's own chat template; few-shot examples
become earlier turns of the same conversation. ``raw``: the paper's plain transcript for base
models, ``Human:``/``Assistant:`` then ``CritiqueRequest:``/``Critique:`` and
``RevisionRequest:``/``Revision:`` sections separated by blank lines, with stop strings where
the model would start the next section by itself. ``auto`` resolves to chat when the model
has a chat template (:func:`resolve_format`).

The step renderers return a :class:`Prompt` (messages or text, not yet tokens) and its stop
strings; :func:`prompt_text` and :func:`prompt_ids` turn a prompt into the exact text and
token ids a model sees, for the in-process backends and for training alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from caitool.constitution import ComparisonExample, ComparisonPrinciple, Constitution, Principle
from caitool.errors import CaitoolError

Format = Literal["chat", "raw"]
FORMATS = ("auto", "chat", "raw")
Messages = list[dict[str, str]]

EXAMPLE_SEPARATOR = "\n\n-----\n\n"
LABELS = {"user": "Human", "assistant": "Assistant", "system": "System"}
# Where a raw completion must stop: the model starting the next section by itself.
RESPONSE_STOP = ("\n\nHuman:", "\n\nCritiqueRequest:", "\n\n-----")
CRITIQUE_STOP = ("\n\nRevisionRequest:", "\n\nRevision:", *RESPONSE_STOP)
REVISION_STOP = ("\n\nCritiqueRequest:", *RESPONSE_STOP)
ANSWER_CUE = "The answer is:"
COT_CUE = "Let's think step by step:"
COT_ANSWER_CUE = "So the answer is:"
# Where a judge's reasoning ends: the model giving its answer, or starting a new section.
REASONING_STOP = (COT_ANSWER_CUE, ANSWER_CUE, *RESPONSE_STOP)
OPTION_LETTERS = ("A", "B")
# What a judge's answer is scored on: the log-probability of each continuation.
OPTIONS = tuple(f" ({letter})" for letter in OPTION_LETTERS)


@dataclass(frozen=True)
class Prompt:
    """One request: chat ``messages`` (rendered by the model's chat template, then
    ``assistant_prefix`` opens the reply), or a raw transcript ``text`` used as it is."""

    messages: tuple[tuple[str, str], ...] | None = None
    text: str | None = None
    assistant_prefix: str = ""

    @classmethod
    def chat(cls, messages: Messages, assistant_prefix: str = "") -> Prompt:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages),
                   assistant_prefix=assistant_prefix)

    @classmethod
    def raw(cls, text: str) -> Prompt:
        return cls(text=text)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def message_dicts(self) -> Messages:
        return [{"role": role, "content": content} for role, content in self.messages or ()]


# -- formats ---------------------------------------------------------------------------------


def check_format(requested: str) -> None:
    if requested not in FORMATS:
        raise CaitoolError(f"--format must be auto, chat or raw, not '{requested}'")


def resolve_format(requested: str, has_chat_template: bool, model: str) -> Format:
    """``auto`` as chat where the model has a chat template, else raw; chat without a
    template is an error."""
    check_format(requested)
    if requested == "auto":
        return "chat" if has_chat_template else "raw"
    if requested == "chat" and not has_chat_template:
        raise CaitoolError(f"model '{model}' has no chat template; use --format raw")
    return requested  # type: ignore[return-value]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer: Any, prompt: Prompt, model: str = "the model") -> str:
    """The exact text a model is given: a chat rendered by its template with the reply
    opened (and ``assistant_prefix`` written), or a raw transcript as it is."""
    if not prompt.is_chat:
        return prompt.text or ""
    if not has_chat_template(tokenizer):
        raise CaitoolError(f"model '{model}' has no chat template; use --format raw")
    text = tokenizer.apply_chat_template(prompt.message_dicts(), add_generation_prompt=True,
                                         tokenize=False)
    return text + prompt.assistant_prefix


def adds_special_tokens(prompt: Prompt) -> bool:
    """A chat template writes its own special tokens; a raw transcript takes the tokenizer's
    (a BOS token, for most models)."""
    return not prompt.is_chat


def prompt_ids(tokenizer: Any, prompt: Prompt, model: str = "the model") -> list[int]:
    return list(tokenizer(prompt_text(tokenizer, prompt, model),
                          add_special_tokens=adds_special_tokens(prompt))["input_ids"])


# -- conversations -------------------------------------------------------------------------


def transcript(messages: Sequence[dict[str, str]]) -> str:
    return "\n\n".join(f"{LABELS[m['role']]}: {m['content']}" for m in messages)


def raw_reply_prompt(messages: Sequence[dict[str, str]]) -> str:
    """A conversation as a raw transcript that ends where the assistant's reply begins."""
    return transcript(messages) + "\n\nAssistant:"


def raw_reply(text: str) -> str:
    """A reply as it follows :func:`raw_reply_prompt` (after the space)."""
    return " " + text


def response_prompt(messages: Messages, fmt: Format) -> tuple[Prompt, list[str]]:
    """The request for an answer to the conversation, and its stop strings."""
    if fmt == "chat":
        return Prompt.chat(messages), []
    return Prompt.raw(raw_reply_prompt(messages)), list(RESPONSE_STOP)


# -- critique and revision -----------------------------------------------------------------


def _chat_example(example) -> Messages:
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


def critique_prompt(constitution: Constitution, messages: Messages, response: str,
                    principle: Principle, fmt: Format,
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


# -- judge questions -----------------------------------------------------------------------


def comparison_question(messages: Messages, question: str, first: str, second: str) -> str:
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


def comparison_prompt(constitution: Constitution, messages: Messages,
                      principle: ComparisonPrinciple, first: str, second: str, fmt: Format,
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


# -- training examples ---------------------------------------------------------------------


def prompt_completion(messages: Messages, reply: str, fmt: Format) -> dict[str, Any]:
    """TRL's prompt/completion row for one reply, rendered as :func:`response_prompt`
    renders the question, so a trained model is asked the way it was taught."""
    if fmt == "chat":
        return {"prompt": messages, "completion": [{"role": "assistant", "content": reply}]}
    return {"prompt": raw_reply_prompt(messages), "completion": raw_reply(reply)}


def preference_row(messages: Messages, chosen: str, rejected: str, fmt: Format) -> dict[str, Any]:
    """TRL's preference row with an explicit prompt."""
    if fmt == "chat":
        return {"prompt": messages,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    return {"prompt": raw_reply_prompt(messages), "chosen": raw_reply(chosen),
            "rejected": raw_reply(rejected)}


def policy_prompt_ids(tokenizer: Any, messages: Messages, fmt: Format) -> list[int]:
    """The token ids a policy is given before it answers (as ``caitool generate`` builds
    them)."""
    prompt, _ = response_prompt(messages, fmt)
    return prompt_ids(tokenizer, prompt)


def reply_ids(tokenizer: Any, text: str, fmt: Format) -> list[int]:
    """A reply's ids as a policy emits them after its prompt: text, then end-of-sequence."""
    body = text if fmt == "chat" else raw_reply(text)
    return list(tokenizer(body, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
