"""Records for a score model (``train-rm --target FIELD``): a conversation, the reply to
score, and the number a person gave it.

The scored text is what ``caitool eval --score-model`` will show the model: the
conversation as the policy's prompt, then the reply. A record gives them as

* ``prompt`` or ``messages`` (ending with a user turn) and ``response``: a system's answer,
  as ``caitool generate`` writes it;
* ``messages`` ending with an assistant turn: everything before it, then that reply;
* a ``transcript`` (or a string ``prompt``) of ``\\n\\nHuman: ...\\n\\nAssistant: ...`` turns
  ending with the assistant's reply: the red-team-attempts rows as published, or as
  ``caitool import jsonl FILE --field transcript`` writes them.

``caitool import red-team-attempts`` is not one of them: it keeps the conversation only up
to the last human turn, and the reply that was rated is what the model must see.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caitool.schema import Messages, Record, check_messages, check_prompt, conversation
from caitool.stages.evaluate.reward_scoring import transcript_messages

NO_REPLY = ("no reply to score: expected 'response', 'messages' ending with an assistant turn, "
            "or a Human:/Assistant: 'transcript' ('caitool import red-team-attempts' leaves the "
            "rated reply out; 'caitool import jsonl FILE --field transcript' keeps it)")


@dataclass
class ScoredExample:
    prompt: Messages
    response: str
    target: float

    @property
    def key(self) -> str:
        """What the held-out split groups by: every reply to a prompt on the same side."""
        return json.dumps(self.prompt, sort_keys=True, ensure_ascii=False)


def _transcript(record: Record) -> Messages | None:
    text = record.get("transcript")
    if not isinstance(text, str) and "messages" not in record:
        text = record.get("prompt")
    return transcript_messages(text) if isinstance(text, str) else None


def _split(record: Record) -> tuple[Messages, str] | str:
    """(prompt, reply) of a record, or why it has none."""
    if "response" in record:
        problem = check_prompt(record)
        if problem:
            return problem
        if not isinstance(record["response"], str) or not record["response"].strip():
            return "'response' must be a non-empty string"
        return conversation(record), record["response"]
    messages = record.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
            and messages[-1].get("role") == "assistant":
        problem = check_messages(messages)
        if problem:
            return problem
        if not any(m["role"] == "user" for m in messages[:-1]):
            return "'messages' has no user turn before the assistant's reply"
        turns = conversation(record)
        return turns[:-1], turns[-1]["content"]
    turns = _transcript(record)
    if turns is not None:
        return turns[:-1], turns[-1]["content"]
    if "transcript" in record:
        return "'transcript' is not Human:/Assistant: turns ending with the assistant's reply"
    return NO_REPLY


def _target(record: Record, field: str) -> float | str:
    if field not in record:
        return f"missing '{field}' (the --target field)"
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"'{field}' is {json.dumps(value)[:40]}, not a number (the --target field)"
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        return f"'{field}' must be a finite number (the --target field)"
    return number


def check_scored(field: str) -> Callable[[Record], str | None]:
    """The record check for ``--target field``."""

    def check(record: Record) -> str | None:
        split = _split(record)
        if isinstance(split, str):
            return split
        target = _target(record, field)
        return target if isinstance(target, str) else None

    return check


def scored_example(record: Record, field: str) -> ScoredExample:
    """The (checked) record as a prompt, a reply and its target."""
    prompt, response = _split(record)  # type: ignore[misc]
    return ScoredExample(prompt, response, float(record[field]))


def standardise(examples: list[ScoredExample]) -> dict[str, Any]:
    """The training targets' mean and spread: the model learns (target - mean) / std, so
    that one learning rate suits a 0-4 rating and a 0-100 score alike."""
    values = [ex.target for ex in examples]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"method": "standardise", "mean": mean, "std": std}
