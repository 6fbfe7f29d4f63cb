"""The record contract shared by every command.

A prompt record holds ``prompt`` (a string) or ``messages`` (a chat ending with a user turn),
and an optional ``id``. Commands add the fields they own and pass every other field through.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ROLES = ("system", "user", "assistant")


def stable_id(record: dict[str, Any]) -> str:
    """An id derived from the prompt alone, so re-runs and resumes agree on it."""
    key = record.get("messages") if "messages" in record else record.get("prompt")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return "p-" + digest[:12]


def ensure_id(record: dict[str, Any]) -> str:
    if "id" not in record or record["id"] in (None, ""):
        record["id"] = stable_id(record)
    return str(record["id"])


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


def check_prompt(record: dict[str, Any]) -> str | None:
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


def check_response(record: dict[str, Any], field: str = "response") -> str | None:
    if field in record and not isinstance(record[field], str):
        return f"'{field}' must be a string, not {type(record[field]).__name__}"
    return None


def conversation(record: dict[str, Any]) -> list[dict[str, str]]:
    """The record's prompt as chat messages."""
    if "messages" in record:
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    prompt = record["prompt"]
    if isinstance(prompt, list):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    return [{"role": "user", "content": prompt}]


def trl_prompt(record: dict[str, Any]) -> str | list[dict[str, str]]:
    """The prompt in TRL's dataset format: a string, or a list of messages for chats."""
    if "messages" in record or isinstance(record.get("prompt"), list):
        return conversation(record)
    return record["prompt"]


def add_provenance(record: dict[str, Any], command: str, info: dict[str, Any]) -> None:
    """Note which model, constitution and seed produced a command's fields."""
    provenance = record.get("provenance")
    if not isinstance(provenance, dict):
        provenance = {}
    provenance[command] = info
    record["provenance"] = provenance
