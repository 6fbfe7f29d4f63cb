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
    examples = []
    for i, chat in enumerate(data.get("system_chat") or []):
        messages = [m for m in chat if isinstance(m, dict)] if isinstance(chat, list) else []
        if len(messages) < 6:
            raise ConstitutionError(source, f"system_chat[{i}] needs 6 turns (ask, answer, "
                                    "critique request, critique, revision request, revision)")
        # The last six turns are the worked example; any before them are the conversation
        # that led up to the question.
        history = tuple((str(m.get("role", "user")), str(m.get("content", "")).strip())
                        for m in messages[:-6])
        turns = [str(m.get("content", "")).strip() for m in messages[-6:]]
        examples.append(CritiqueExample(*turns, history=history))
    return Constitution(name=default_name, principles=principles, critique_examples=examples,
                        source=source)
