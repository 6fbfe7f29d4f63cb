"""LangChain-style principle lists: {name: {critique_request, revision_request}} or a list of them."""

from __future__ import annotations

from typing import Any

from caitool.constitution.model import (
    Constitution,
    Principle,
    text_field,
)


def recognises(data: dict[str, Any]) -> bool:
    return bool(data) and all(
        isinstance(v, dict) and "critique_request" in v for v in data.values()
    )


def load(data: Any, source: str, default_name: str) -> Constitution:
    entries = (
        [dict(v, name=v.get("name", k)) for k, v in data.items()] if isinstance(data, dict) else data
    )
    principles = []
    for i, entry in enumerate(entries):
        where = f"principle {i}"
        principles.append(Principle(
            id=str(text_field(entry, "name", where, source, required=False) or f"principle-{i}"),
            critique=text_field(entry, "critique_request", where, source),
            revision=text_field(entry, "revision_request", where, source),
        ))
    return Constitution(name=default_name, principles=principles, source=source)
