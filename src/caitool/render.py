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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from caitool.constitution import (
    ComparisonExample,
    ComparisonPrinciple,
    Constitution,
    CritiqueExample,
    Principle,
)
from caitool.errors import CaitoolError
from caitool.prompt_requests import PromptRequest

Format = Literal["chat", "raw"]
FORMATS = ("auto", "chat", "raw")
Messages = list[dict[str, str]]

LABELS = {"user": "Human", "assistant": "Assistant", "system": "System"}
# Where a raw completion must stop: the model starting the next section by itself.
RESPONSE_STOP = ("\n\nHuman:", "\n\nCritiqueRequest:")
CRITIQUE_STOP = ("\n\nRevisionRequest:", "\n\nRevision:", *RESPONSE_STOP)
REVISION_STOP = ("\n\nCritiqueRequest:", *RESPONSE_STOP)
COT_CUE = "Let's think step by step:"
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
    # (id, step) the request serves, for a dry run's lines; backends ignore it.
    serves: tuple[str, str] | None = field(default=None, compare=False)

    @classmethod
    def chat(cls, messages: Messages, assistant_prefix: str = "") -> Prompt:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages),
                   assistant_prefix=assistant_prefix)

    @classmethod
    def raw(cls, text: str) -> Prompt:
        return cls(text=text)

    def serving(self, owner: str, step: str) -> Prompt:
        """The same request, tagged with what it serves (see ``serves``)."""
        return replace(self, serves=(owner, step))

    def with_suffix(self, suffix: str) -> Prompt:
        """The same request with ``suffix`` written after its end (an option to score)."""
        if self.is_chat:
            return Prompt(messages=self.messages, assistant_prefix=self.assistant_prefix + suffix)
        return Prompt(text=(self.text or "") + suffix)

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


def split_options(prompt_ids: Sequence[int], joined: Sequence[Sequence[int]]
                  ) -> tuple[list[int], list[list[int]]]:
    """The context and each option's own tokens, from the prompt's ids and the ids of the
    prompt and each option tokenised together as one text.

    Options are scored as they follow their prompt: a tokenizer may tokenise " (A)" alone
    differently (a SentencePiece tokenizer adds a prefix space to a text's start) or join the
    prompt's last characters with the option's first. The context is what the prompt's ids and
    every joined text share; the rest of each joined text is the option's."""
    def shared(ids: Sequence[int]) -> int:
        return next((k for k, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))

    cut = min([len(prompt_ids), *map(shared, joined)])
    context = list(prompt_ids[:cut])
    tails = [list(ids[cut:]) for ids in joined]
    if any(not tail for tail in tails):
        raise CaitoolError("cannot score an empty option")
    return context, tails


def option_ids(tokenizer: Any, prompt: Prompt, options: Sequence[str],
               model: str = "the model") -> tuple[list[int], list[list[int]]]:
    """:func:`split_options` for one prompt: its text and each option tokenised together."""
    text = prompt_text(tokenizer, prompt, model)
    special = adds_special_tokens(prompt)
    ids = tokenizer([text, *(text + option for option in options)], add_special_tokens=special)
    return split_options(ids["input_ids"][0], ids["input_ids"][1:])


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


# (section, request, reply) after a response: the section names the raw labels
# (``CritiqueRequest:``/``Critique:``), and a reply None is the one the model is asked for.
Exchange = tuple[str, str, str | None]


def _example_exchanges(example: CritiqueExample, direct: bool) -> list[Exchange]:
    """A direct revision's examples leave out their critiques, so that the model sees a
    revision follow its request with no critique between (and writes none itself)."""
    revision = ("Revision", example.revision_request, example.revision)
    return [revision] if direct else [("Critique", example.critique_request, example.critique), revision]


def _chat_turns(messages: Messages, response: str, exchanges: list[Exchange]) -> Messages:
    turns = [*messages, {"role": "assistant", "content": response}]
    for _, request, reply in exchanges:
        turns.append({"role": "user", "content": request})
        if reply is not None:
            turns.append({"role": "assistant", "content": reply})
    return turns


def _raw_turns(messages: Messages, response: str, exchanges: list[Exchange]) -> str:
    text = f"\n\n{transcript(messages)}\n\nAssistant: {response}"
    for section, request, reply in exchanges:
        text += f"\n\n{section}Request: {request}\n\n{section}:" + ("" if reply is None else f" {reply}")
    return text


def critique_prompt(constitution: Constitution, messages: Messages, response: str,
                    principle: Principle, fmt: Format, critique: str | None = None,
                    direct: bool = False) -> tuple[Prompt, list[str]]:
    """Ask for a critique (``critique`` None), given the critique for the revision, or with
    ``direct`` (and no critique) for the revision straight after the response (section 3.5).

    Raw, as the paper's transcripts: every few-shot example and then the request, each its
    own ``\n\nHuman: ...`` transcript, run together."""
    asked: list[Exchange] = [] if direct else [("Critique", principle.critique, critique)]
    if direct or critique is not None:
        asked.append(("Revision", principle.revision, None))
    shots = [(e.messages(), e.response, _example_exchanges(e, direct))
             for e in constitution.critique_examples]
    if fmt == "chat":
        return Prompt.chat([t for shot in shots for t in _chat_turns(*shot)]
                           + _chat_turns(messages, response, asked)), []
    text = "".join(_raw_turns(*shot) for shot in shots) + _raw_turns(messages, response, asked)
    return Prompt.raw(text), list(REVISION_STOP if asked[-1][0] == "Revision" else CRITIQUE_STOP)


# -- judge questions -----------------------------------------------------------------------
#
# The paper's question, as one string: "\n\n", the frame sentence, "\n\n", the conversation
# as a transcript ending on the human's turn, "\n\n", the principle as its instruction file
# writes it ("\n<question> Options:"), one line per option (" (A) [[[response]]]"), a blank
# line and the answer cue. The judge's answer is scored on the continuations " (A)", " (B)".
# In chat, the question (without the leading newlines) is the user's turn and the cue opens
# the assistant's reply. With chain of thought the question is a human turn and the
# reasoning an assistant turn, and the cue follows the reasoning.


def principle_text(question: str) -> str:
    """A comparison principle as the paper's instruction file writes it."""
    return f"\n{question} Options:"


def comparison_question(constitution: Constitution, messages: Messages, question: str,
                        responses: Sequence[str]) -> str:
    """The multiple-choice question, from the frame sentence to the last option."""
    options = "".join(f"\n ({letter}) [[[{response}]]]"
                      for letter, response in zip(OPTION_LETTERS, responses, strict=True))
    return (f"{constitution.judge_frame}\n\n{transcript(messages)}\n\n"
            f"{principle_text(question)}{options}")


def _example_question(constitution: Constitution, example: ComparisonExample,
                      index: int) -> tuple[str, str]:
    """A few-shot comparison and the letter of its answer, with the better response
    alternating between (A) and (B) so the examples themselves teach no position preference."""
    better_first = index % 2 == 0
    responses = (example.better, example.worse) if better_first else (example.worse, example.better)
    wants_better = example.direction != "worse"
    letter = "A" if better_first == wants_better else "B"
    return comparison_question(constitution, example.messages(), example.question, responses), letter


def comparison_prompt(constitution: Constitution, messages: Messages,
                      principle: ComparisonPrinciple, first: str, second: str, fmt: Format,
                      reasoning: str | None = None, cot: bool = False) -> Prompt:
    """The judge's prompt, ending at the answer cue (or, with ``cot`` and no reasoning yet,
    at the cue that invites step-by-step reasoning)."""
    question = comparison_question(constitution, messages, principle.question, (first, second))
    cue = constitution.answer_cue
    if cot:
        return _cot_prompt(constitution, question, fmt, reasoning)
    shots = [_example_question(constitution, e, i)
             for i, e in enumerate(constitution.comparison_examples)]
    if fmt == "chat":
        turns = []
        for shot, letter in shots:
            turns += [{"role": "user", "content": shot},
                      {"role": "assistant", "content": f"{cue} ({letter})"}]
        turns.append({"role": "user", "content": question})
        return Prompt.chat(turns, assistant_prefix=cue)
    text = "".join(f"\n\n{shot}\n\n{cue} ({letter})" for shot, letter in shots)
    return Prompt.raw(f"{text}\n\n{question}\n\n{cue}")


def cot_examples(constitution: Constitution) -> list[tuple[str, str]]:
    """Chain-of-thought examples as (question, reasoning and answer): a CoT file's worked
    examples when the constitution has them, else its few-shot comparisons that carry a
    reasoning (an example with a bare answer would teach the judge to skip the reasoning)."""
    if constitution.worked_comparisons:
        return [_split_worked(w.text) for w in constitution.worked_comparisons]
    examples = []
    for index, example in enumerate(constitution.comparison_examples):
        if example.reasoning:
            question, letter = _example_question(constitution, example, index)
            examples.append((question, f"{COT_CUE} {example.reasoning}\n\n"
                                       f"{constitution.answer_cue} ({letter})"))
    return examples


def _split_worked(text: str) -> tuple[str, str]:
    """A worked example's human question and assistant answer (the whole text as the
    question when it has no ``Assistant:`` turn)."""
    head, marker, answer = text.rpartition("\n\nAssistant:")
    if not marker:
        return text.strip(), ""
    return _without_label(head.strip(), "Human:"), answer.strip()


def _without_label(text: str, label: str) -> str:
    return text[len(label):].strip() if text.startswith(label) else text


def _cot_prompt(constitution: Constitution, question: str, fmt: Format,
                reasoning: str | None) -> Prompt:
    opening = COT_CUE if reasoning is None else (
        f"{COT_CUE} {reasoning.strip()}\n\n{constitution.answer_cue}")
    shots = cot_examples(constitution)
    if fmt == "chat":
        turns = []
        for shot, answer in shots:
            turns += [{"role": "user", "content": shot}]
            if answer:
                turns += [{"role": "assistant", "content": answer}]
        turns.append({"role": "user", "content": question})
        return Prompt.chat(turns, assistant_prefix=opening)
    if constitution.worked_comparisons:
        text = "".join(w.text for w in constitution.worked_comparisons)
    else:
        text = "".join(f"\n\nHuman: {shot}\n\nAssistant: {answer}" for shot, answer in shots)
    return Prompt.raw(f"{text}\n\nHuman: {question}\n\nAssistant: {opening}")


def reasoning_stop(constitution: Constitution) -> list[str]:
    """Where a judge's reasoning ends: the model giving its answer, or starting a new turn."""
    return [constitution.answer_cue, *RESPONSE_STOP]


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
    """The token ids a policy is given before it answers (as ``caitool generate`` builds them)."""
    return prompt_ids(tokenizer, response_prompt(messages, fmt)[0])


def reply_ids(tokenizer: Any, text: str, fmt: Format) -> list[int]:
    """A reply's ids as a policy emits them after its prompt: text, then end-of-sequence."""
    body = text if fmt == "chat" else raw_reply(text)
    return list(tokenizer(body, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]


# -- new prompts from seed prompts (red-team) -----------------------------------------------
#
# The paper grew its red-team set by few-shot prompting a model with people's prompts. The
# request (prompt_requests.py) shows a handful of seeds and asks for one more. Raw, for base
# models: its description, each seed as a "<label>:" paragraph, then an open label for the
# model to fill (it stops where it would start the next one). Chat: the seeds as a numbered
# list in one user turn, then the instruction to reply with the new prompt alone.


def one_paragraph(text: str) -> str:
    """A seed as one paragraph: its line breaks would read as the end of the example."""
    return " ".join(text.split())


def grow_prompt(request: PromptRequest, seeds: Sequence[str], fmt: Format) -> tuple[Prompt, list[str]]:
    """The request for one new prompt in the spirit of ``seeds``, and its stop strings."""
    examples = [one_paragraph(seed) for seed in seeds]
    if fmt == "chat":
        listed = "\n".join(f"{i}. {text}" for i, text in enumerate(examples, 1))
        return Prompt.chat([{"role": "user", "content":
                             f"{request.description}\n\n{listed}\n\n{request.instruction}"}]), []
    shown = "".join(f"\n\n{request.label}: {text}" for text in examples)
    return (Prompt.raw(f"{request.description}{shown}\n\n{request.label}:"),
            ["\n\n", f"\n{request.label}:"])
