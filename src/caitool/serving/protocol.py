"""What the reward server reads and answers: OpenRLHF's remote reward protocol and caitool's
own plain one, each request turned into :class:`Item` s (a conversation, the response to
score and, where the request gives one, a reference answer) or refused with one line.

OpenRLHF's client posts ``{"query": [...], "prompts": [...], "labels": [...]}``: each query is
the policy's prompt and response decoded together (special tokens kept), each prompt the
prompt alone as the policy saw it (its chat template applied, or not), each label the dataset's
label for that prompt. It reads ``rewards`` (and, since 0.8.3, ``scores`` and ``extra_logs``,
which its clients from 0.8.3 to 0.9.0 require), so every answer carries all three. The response is the
query past its prompt, with end-of-turn tokens taken off its end; the conversation is the
prompt with the policy's chat template undone (``--policy``), or a ``Human:``/``Assistant:``
transcript read back into turns, or else the prompt text as the user's one message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from caitool.schema import Messages, check_messages

# End-of-turn tokens of common chat templates, taken off a response's end when no --policy
# says which tokens the policy's are.
END_MARKERS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
               "<end_of_turn>", "<eos>", "<|end|>", "<|eos|>")
SENTINEL = "\x00caitool-user-turn\x00"


class PayloadError(Exception):
    """A request the server refuses: an HTTP status and one line saying why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Item:
    messages: Messages
    response: str
    reference: str | None = None

    @property
    def key(self) -> str:
        """The conversation as the trainers key it (their dataset's ``conversation`` column)."""
        return json.dumps(self.messages, ensure_ascii=False)


class PromptReader:
    """Turns OpenRLHF's prompt strings back into conversations (see the module note)."""

    def __init__(self, tokenizer: Any = None):
        self.template: tuple[str, str] | None = None
        self.markers = END_MARKERS
        if tokenizer is not None:
            self.markers = tuple(sorted({*END_MARKERS, *tokenizer.all_special_tokens}, key=len,
                                        reverse=True))
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template([{"role": "user", "content": SENTINEL}],
                                                     tokenize=False, add_generation_prompt=True)
                if text.count(SENTINEL) == 1:
                    prefix, suffix = text.split(SENTINEL)
                    self.template = (prefix, suffix)

    def conversation(self, prompt: str) -> Messages:
        if self.template:
            prefix, suffix = self.template
            if (prompt.startswith(prefix) and prompt.endswith(suffix)
                    and len(prompt) >= len(prefix) + len(suffix)):
                return [{"role": "user", "content": prompt[len(prefix):len(prompt) - len(suffix)]}]
        turns = _transcript(prompt)
        if turns and turns[-1] == {"role": "assistant", "content": ""}:
            return turns[:-1]
        return [{"role": "user", "content": prompt}]

    def response(self, text: str) -> str:
        """The response without the end-of-turn tokens and space after it."""
        text = text.rstrip()
        trimmed = True
        while trimmed:
            trimmed = False
            for marker in self.markers:
                if marker and text.endswith(marker):
                    text, trimmed = text[:-len(marker)].rstrip(), True
        return text.strip()


def _transcript(text: str) -> Messages | None:
    from caitool.imports.rows import Mismatch
    from caitool.imports.transcripts import parse

    try:
        turns = parse(text.strip(), "prompt")
    except Mismatch:
        return None
    return turns if any(turn["role"] == "user" and turn["content"] for turn in turns) else None


def _strings(body: dict[str, Any], field: str, size: int | None, required: bool) -> list | None:
    values = body.get(field)
    if values is None:
        if required:
            raise PayloadError(422, f"missing '{field}': a list of strings")
        return None
    if not isinstance(values, list):
        raise PayloadError(422, f"'{field}' must be a list, not {type(values).__name__}")
    if size is not None and len(values) != size:
        raise PayloadError(422, f"'{field}' has {len(values)} entries, 'query' has {size}")
    return values


def _label(value: Any, index: int) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PayloadError(422, f"'labels[{index}]' must be a string, a number or null, "
                                f"not {type(value).__name__}")
    return str(value)


def openrlhf_items(body: Any, reader: PromptReader, max_items: int) -> list[Item]:
    if not isinstance(body, dict):
        raise PayloadError(422, "the body must be a JSON object with 'query' (and 'prompts', "
                                "'labels') lists")
    queries = _strings(body, "query", None, required=True)
    if not queries:
        raise PayloadError(422, "'query' is empty: nothing to score")
    _check_count(len(queries), max_items)
    prompts = _strings(body, "prompts", len(queries), required=False)
    labels = _strings(body, "labels", len(queries), required=False) or [None] * len(queries)
    items = []
    for index, query in enumerate(queries):
        if not isinstance(query, str):
            raise PayloadError(422, f"'query[{index}]' must be a string, not {type(query).__name__}")
        reference = _label(labels[index], index)
        if prompts is None:
            messages, response = _split_query(query, index, reader)
        else:
            prompt = prompts[index]
            if not isinstance(prompt, str):
                raise PayloadError(422, f"'prompts[{index}]' must be a string, "
                                        f"not {type(prompt).__name__}")
            response = _after_prompt(query, prompt, index)
            messages = reader.conversation(prompt)
        items.append(Item(messages, reader.response(response), reference))
    return items


def _after_prompt(query: str, prompt: str, index: int) -> str:
    if query.startswith(prompt):
        return query[len(prompt):]
    # Decoding the prompt's tokens again can change the space at its start.
    if query.lstrip().startswith(prompt.lstrip()):
        return query.lstrip()[len(prompt.lstrip()):]
    raise PayloadError(422, f"'query[{index}]' does not begin with 'prompts[{index}]': each query "
                            "must be its prompt followed by the response")


def _split_query(query: str, index: int, reader: PromptReader) -> tuple[Messages, str]:
    """A query sent without its prompt: a transcript whose last turn is the response."""
    if reader.template:
        prefix, suffix = reader.template
        if query.startswith(prefix) and suffix in query[len(prefix):]:
            user, response = query[len(prefix):].split(suffix, 1)
            return [{"role": "user", "content": user}], response
    turns = _transcript(query)
    if not turns or turns[-1]["role"] != "assistant" or len(turns) < 2:
        raise PayloadError(422, f"'query[{index}]' cannot be split into prompt and response: send "
                                "'prompts' too, or a Human:/Assistant: transcript")
    return turns[:-1], turns[-1]["content"]


def _check_count(count: int, max_items: int) -> None:
    if count > max_items:
        raise PayloadError(413, f"{count} responses in one request; this server takes at most "
                                f"{max_items} (--max-items)")


def plain_items(body: Any, max_items: int) -> tuple[list[Item], list[Any]]:
    """caitool's plain request: a list of records (or ``{"records": [...]}``), each a prompt
    (text or messages) or ``messages``, the ``response`` (or ``messages`` ending with the
    assistant's reply) and optionally a ``reference`` answer and an ``id``; the ids come back
    with the rewards."""
    records = body.get("records") if isinstance(body, dict) else body
    if not isinstance(records, list):
        raise PayloadError(422, "the body must be a JSON list of records ({prompt, response}) "
                                "or {\"records\": [...]}")
    if not records:
        raise PayloadError(422, "no records: nothing to score")
    _check_count(len(records), max_items)
    items, ids = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise PayloadError(422, f"record {index} must be an object, not {type(record).__name__}")
        try:
            items.append(_plain_item(record))
        except PayloadError as exc:
            raise PayloadError(422, f"record {index}: {exc.reason}") from None
        ids.append(record.get("id", index))
    return items, ids


def _plain_item(record: dict[str, Any]) -> Item:
    reference = record.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise PayloadError(422, f"'reference' must be a string, not {type(reference).__name__}")
    if "id" in record and not isinstance(record["id"], (str, int)):
        raise PayloadError(422, "'id' must be a string or an integer")
    if "messages" in record:
        messages = record["messages"]
        field = "messages"
    elif "prompt" in record:
        messages = record["prompt"]
        field = "prompt"
        if isinstance(messages, str):
            if not messages.strip():
                raise PayloadError(422, "'prompt' is empty")
            messages = [{"role": "user", "content": messages}]
        elif not isinstance(messages, list):
            raise PayloadError(422, "'prompt' must be a string or a list of messages, not "
                                    f"{type(messages).__name__}")
    else:
        raise PayloadError(422, "missing 'prompt' (or 'messages')")
    problem = check_messages(messages, field)
    if problem:
        raise PayloadError(422, problem)
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    response = record.get("response")
    if response is None and messages[-1]["role"] == "assistant":
        messages, response = messages[:-1], messages[-1]["content"]
    if not isinstance(response, str):
        raise PayloadError(422, "missing 'response' (a string), or messages ending with the "
                                "assistant's reply" if response is None else
                                f"'response' must be a string, not {type(response).__name__}")
    if not messages or messages[-1]["role"] != "user":
        raise PayloadError(422, f"'{field}' must end with a user turn before the response")
    return Item(messages, response, reference or None)
