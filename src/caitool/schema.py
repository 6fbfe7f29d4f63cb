"""Every record kind caitool reads: its check and its accessors, in one place.

A check returns why a record is not of its kind (one line, for ``file:line: problem``), or
None. Kinds, in pipeline order:

* prompt: ``prompt`` (a string, or TRL's list of messages) or ``messages`` (a chat ending
  with a user turn), and an optional ``id``;
* supervised: a prompt with ``response``, ``initial_response`` and ``revisions`` (rounds of
  {principle, critique, revision}; ``revise --direct``'s have ``direct`` and no critique);
* samples: a prompt with ``responses`` (two or more), as ``generate -n 2`` writes them;
* preference: TRL's ``prompt``/``chosen``/``rejected`` (``p_chosen`` optional), or TRL's
  implicit-prompt form where ``chosen`` and ``rejected`` are whole conversations;
* system answer: a prompt with one ``response`` (what ``eval`` compares);
* SFT example: a prompt with a target (``response``, ``completion``, ``responses``, or
  ``messages`` ending with the assistant's reply).

Commands add the fields they own and pass every other field through.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]
Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant")


# -- ids and provenance --------------------------------------------------------------------


def stable_id(record: Record) -> str:
    """An id derived from the prompt alone, so re-runs and resumes agree on it."""
    key = record.get("messages") if "messages" in record else record.get("prompt")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return "p-" + digest[:12]


def ensure_id(record: Record) -> str:
    if "id" not in record or record["id"] in (None, ""):
        record["id"] = stable_id(record)
    return str(record["id"])


def add_provenance(record: Record, command: str, info: dict[str, Any]) -> None:
    """Note which model, constitution and seed produced a command's fields."""
    provenance = record.get("provenance")
    if not isinstance(provenance, dict):
        provenance = {}
    provenance[command] = info
    record["provenance"] = provenance


# -- prompts -------------------------------------------------------------------------------


def check_messages(messages: Any, field: str = "messages") -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"'{field}' must be a non-empty list of {{role, content}} objects"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"'{field}[{i}]' must be an object with 'role' and 'content'"
        if message.get("role") not in ROLES:
            return f"'{field}[{i}].role' must be one of {', '.join(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"'{field}[{i}].content' must be a string"
    return None


def check_prompt(record: Record) -> str | None:
    """Why ``record`` is not a valid prompt record, or None."""
    if "id" in record and not isinstance(record["id"], (str, int)):
        return "'id' must be a string or an integer"
    if "messages" in record:
        problem = check_messages(record["messages"])
        if problem:
            return problem
        if record["messages"][-1]["role"] != "user":
            return "'messages' must end with a user turn"
        return None
    if "prompt" not in record:
        return "missing 'prompt' (or 'messages')"
    prompt = record["prompt"]
    if isinstance(prompt, list):
        # TRL's conversational prompt: a list of messages.
        problem = check_messages(prompt, "prompt")
        if problem:
            return problem
        if prompt[-1]["role"] != "user":
            return "'prompt' must end with a user turn"
        return None
    if not isinstance(prompt, str):
        return f"'prompt' must be a string, not {type(prompt).__name__}"
    if not prompt.strip():
        return "'prompt' is empty"
    return None


def conversation(record: Record) -> Messages:
    """The (checked) record's prompt as chat messages."""
    if "messages" in record:
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    prompt = record["prompt"]
    if isinstance(prompt, list):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    return [{"role": "user", "content": prompt}]


def trl_prompt(record: Record) -> str | Messages:
    """The prompt in TRL's dataset format: a string, or a list of messages for chats."""
    if "messages" in record or isinstance(record.get("prompt"), list):
        return conversation(record)
    return record["prompt"]


def check_response(record: Record, field: str = "response") -> str | None:
    if field in record and not isinstance(record[field], str):
        return f"'{field}' must be a string, not {type(record[field]).__name__}"
    return None


# -- the supervised stage ------------------------------------------------------------------


def check_revisions(record: Record) -> str | None:
    revisions = record.get("revisions")
    if revisions is None:
        return None
    if not isinstance(revisions, list):
        return "'revisions' must be a list"
    for i, entry in enumerate(revisions):
        # A direct round ('revise --direct') has no critique and is revised when it is made.
        direct = isinstance(entry, dict) and entry.get("direct") is True
        if direct and (entry.get("critique") is not None or not isinstance(entry.get("revision"), str)):
            return f"'revisions[{i}]' is direct: its 'critique' must be null and its 'revision' a string"
        if not direct and (not isinstance(entry, dict) or not isinstance(entry.get("critique"), str)):
            return f"'revisions[{i}]' must be an object with a 'critique' string"
        if entry.get("revision") is not None and not isinstance(entry["revision"], str):
            return f"'revisions[{i}].revision' must be a string or null"
    return None


def awaiting_revision(record: Record) -> bool:
    """Whether the last round has a critique and no revision yet."""
    revisions = record.get("revisions") or []
    return bool(revisions) and revisions[-1].get("revision") is None


def check_for_critique(record: Record) -> str | None:
    problem = check_prompt(record) or check_response(record) or check_revisions(record)
    if problem:
        return problem
    if awaiting_revision(record):
        return "the last round's critique has no revision yet; run 'caitool revise' first"
    return None


def check_for_revise(record: Record) -> str | None:
    problem = check_prompt(record) or check_response(record) or check_revisions(record)
    if problem:
        return problem
    if "response" not in record:
        return "missing 'response' (run 'caitool critique' first)"
    if not awaiting_revision(record):
        return "no critique waiting for a revision; run 'caitool critique' first"
    return None


def check_revised(record: Record) -> str | None:
    """A supervised record whose last round is revised: its initial response and final
    revision make a before/after pair (``prefs``, ``eval --revisions``)."""
    problem = check_prompt(record) or check_revisions(record)
    if problem:
        return problem
    if not isinstance(record.get("initial_response"), str):
        return ("missing 'initial_response': needs records from 'caitool critique' and "
                "'caitool revise'")
    revisions = record.get("revisions")
    if not revisions:
        return ("no revision to prefer ('revisions' is missing or empty); run "
                "'caitool critique' and 'caitool revise' first")
    if revisions[-1].get("revision") is None:
        return "the last critique has no revision yet; run 'caitool revise' first"
    return None


# -- samples and system answers ------------------------------------------------------------


def check_samples(record: Record) -> str | None:
    """A prompt with two or more responses to judge (what ``compare`` reads)."""
    problem = check_prompt(record)
    if problem:
        return problem
    responses = record.get("responses")
    if responses is None:
        hint = " (one 'response' is not enough)" if "response" in record else ""
        return (f"missing 'responses'{hint}: compare needs two or more, "
                "e.g. from 'caitool generate -n 2'")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        return "'responses' must be a list of strings"
    if len(responses) < 2:
        return (f"'responses' has {len(responses)} response{'s' if len(responses) != 1 else ''}; "
                "compare needs at least two (e.g. 'caitool generate -n 2')")
    return None


def check_system_answer(record: Record) -> str | None:
    """A prompt with one ``response``: a system's answer, as ``eval`` compares them."""
    problem = check_prompt(record) or check_response(record)
    if problem:
        return problem
    if "response" not in record:
        if "responses" in record:
            return ("has 'responses' (several samples) but no 'response': eval compares one "
                    "response per prompt (generate with -n 1)")
        return "missing 'response' (the system's answer to the prompt)"
    return None


# -- training examples ---------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A number a float can hold: JSON readers turn ``NaN``, ``Infinity`` and ``1e999`` into
    floats that no loss survives, and an integer past a float's range cannot be one."""
    if not _number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _ends_with_reply(record: Record) -> bool:
    """TRL's conversational SFT row: ``messages`` whose last turn is the target."""
    messages = record.get("messages")
    return ("prompt" not in record and isinstance(messages, list) and bool(messages)
            and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant")


def check_sft(record: Record) -> str | None:
    """Why ``record`` cannot be a supervised example, or None."""
    if _ends_with_reply(record):
        messages = record["messages"]
        problem = check_messages(messages)
        if problem:
            return problem
        if not any(m["role"] == "user" for m in messages[:-1]):
            return "'messages' has no user turn before the assistant's reply"
        if not messages[-1]["content"].strip():
            return "the last assistant turn of 'messages' is empty"
        return None
    problem = check_prompt(record)
    if problem:
        return problem
    if "completion" in record:
        completion = record["completion"]
        if isinstance(completion, list):
            completion = _answer(completion, "completion")
            if isinstance(completion, tuple):
                return completion[0]
        if not _is_text(completion):
            return "'completion' must be a non-empty string"
        return None
    if "responses" in record and "response" not in record:
        responses = record["responses"]
        if not isinstance(responses, list) or not responses or not all(map(_is_text, responses)):
            return "'responses' must be a non-empty list of non-empty strings"
        return None
    if "response" not in record:
        return ("no training target: expected 'response', 'completion', or 'messages' ending "
                "with an assistant turn")
    if not _is_text(record["response"]):
        return "'response' must be a non-empty string"
    return check_revisions(record)


@dataclass
class SFTExample:
    prompt: Messages
    response: str


def sft_examples(record: Record, all_rounds: bool = False) -> list[SFTExample]:
    """The examples one (checked) record gives; with ``all_rounds`` one per revision round."""
    if _ends_with_reply(record):
        messages = conversation({"messages": record["messages"]})
        return [SFTExample(messages[:-1], messages[-1]["content"])]
    prompt = conversation(record)
    if "completion" in record:
        return [SFTExample(prompt, _answer(record["completion"], "completion"))]
    if "response" not in record:
        return [SFTExample(prompt, text) for text in record["responses"]]
    if all_rounds:
        revised = [entry["revision"] for entry in record.get("revisions") or []
                   if _is_text(entry.get("revision"))]
        if revised:
            return [SFTExample(prompt, text) for text in revised]
    return [SFTExample(prompt, record["response"])]


def _answer(value: Any, name: str) -> str | tuple[str]:
    """The text of a chosen/rejected/completion answer, or (problem,)."""
    if isinstance(value, list):
        problem = check_messages(value, name)
        if problem:
            return (problem,)
        if len(value) != 1 or value[0]["role"] != "assistant":
            return (f"'{name}' must be a string or a list holding one assistant message",)
        value = value[0]["content"]
    if not isinstance(value, str):
        return (f"missing '{name}'" if value is None else f"'{name}' must be a string",)
    return value


def _split_implicit(record: Record) -> tuple[Messages, Messages, Messages] | str:
    """TRL's implicit-prompt format: chosen and rejected are whole conversations."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, list):
            return f"missing 'prompt' (or 'messages'), and '{name}' is not a whole conversation"
        problem = check_messages(value, name)
        if problem:
            return problem
        if value[-1]["role"] != "assistant":
            return f"'{name}' must end with an assistant turn"
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or not any(m["role"] == "user" for m in chosen[:shared]):
        return "'chosen' and 'rejected' share no prompt (give 'prompt' explicitly)"
    return chosen[:shared], chosen[shared:], rejected[shared:]


def check_preference(record: Record) -> str | None:
    if "prompt" in record or "messages" in record:
        problem = check_prompt(record)
        if problem:
            return problem
        for name in ("chosen", "rejected"):
            answer = _answer(record.get(name), name)
            if isinstance(answer, tuple):
                return answer[0]
    else:
        split = _split_implicit(record)
        if isinstance(split, str):
            return split
        for name, tail in zip(("chosen", "rejected"), split[1:]):
            if len(tail) != 1:
                return f"'{name}' must end with exactly one assistant turn after the shared prompt"
    p = record.get("p_chosen")
    if p is not None and (not _number(p) or not 0 <= p <= 1):
        return "'p_chosen' must be a number in [0, 1]"
    margin = record.get("margin")
    if margin is not None and not _finite(margin):
        return "'margin' must be a finite number"
    return None


@dataclass
class PreferenceExample:
    prompt: Messages
    chosen: str
    rejected: str
    p_chosen: float | None = None
    margin: float | None = None

    @property
    def key(self) -> str:
        return json.dumps(self.prompt, sort_keys=True, ensure_ascii=False)


def preference_example(record: Record) -> PreferenceExample:
    """The (checked) preference record as prompt messages and two answer texts."""
    if "prompt" in record or "messages" in record:
        prompt = conversation(record)
        chosen = _answer(record["chosen"], "chosen")
        rejected = _answer(record["rejected"], "rejected")
    else:
        prompt, chosen_tail, rejected_tail = _split_implicit(record)
        chosen, rejected = chosen_tail[0]["content"], rejected_tail[0]["content"]
    p = record.get("p_chosen")
    margin = record.get("margin")
    return PreferenceExample(prompt, chosen, rejected,  # type: ignore[arg-type]
                             None if p is None else float(p),
                             None if margin is None else float(margin))
