"""Hugging Face's CAI recipe JSON: 'constitutions' of {critic, revision} and 'system_chat' examples."""

from __future__ import annotations

from typing import Any

from caitool.constitution.model import (
    Constitution,
    ConstitutionError,
    CritiqueExample,
    Principle,
    text_field,
)


def load(data: dict[str, Any], source: str, default_name: str) -> Constitution:
    pairs = data.get("constitutions")
    if not isinstance(pairs, list):
        raise ConstitutionError(source, "'constitutions' must be a list of {critic, revision}")
    principles = [
        Principle(
            id=f"hf-{i}",
            critique=text_field(entry, "critic", f"constitutions[{i}]", source),
            revision=text_field(entry, "revision", f"constitutions[{i}]", source),
        )
        for i, entry in enumerate(pairs)
    ]
    chats = data.get("system_chat")
    if chats is not None and not isinstance(chats, list):
        raise ConstitutionError(source, "'system_chat' must be a list of conversations")
    examples = []
    for i, chat in enumerate(chats or []):
        if not isinstance(chat, list):
            raise ConstitutionError(source, f"system_chat[{i}] must be a list of messages")
        for j, message in enumerate(chat):
            if not (isinstance(message, dict) and isinstance(message.get("content"), str)
                    and isinstance(message.get("role", "user"), str)):
                raise ConstitutionError(source, f"system_chat[{i}][{j}] must be a message "
                                                "{role, content} with string values")
        if len(chat) < 6:
            raise ConstitutionError(source, f"system_chat[{i}] needs 6 turns (ask, answer, "
                                    "critique request, critique, revision request, revision)")
        # The last six turns are the worked example; any before them are the conversation
        # that led up to the question.
        history = tuple((m.get("role", "user"), m["content"].strip()) for m in chat[:-6])
        turns = [m["content"].strip() for m in chat[-6:]]
        examples.append(CritiqueExample(*turns, history=history))
    return Constitution(name=default_name, principles=principles, critique_examples=examples,
                        source=source)
