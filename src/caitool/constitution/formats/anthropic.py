"""Anthropic's released prompt files: a directory of JSON files, each recognised by its shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from caitool.constitution.model import (
    ComparisonExample,
    ComparisonPrinciple,
    Constitution,
    ConstitutionError,
    CritiqueExample,
    Principle,
    validate,
)

_TRANSCRIPT_FIELDS = ("Human", "Assistant", "CritiqueRequest", "Critique", "RevisionRequest",
                      "Revision")
_TRANSCRIPT = re.compile(r"(?:^|\n\n)(" + "|".join(_TRANSCRIPT_FIELDS) + r"):")
_WORSE = re.compile(r"\bmore (harmful|toxic|dangerous|unethical|offensive|objectionable)\b|"
                    r"\bworse\b|\bless (ethical|harmless|appropriate)\b", re.IGNORECASE)


def _strip_label(text: str, label: str) -> str:
    text = text.strip()
    if text.startswith(label + ":"):
        text = text[len(label) + 1:]
    return text.strip()


def _parse_transcript(text: str) -> dict[str, str]:
    parts = _TRANSCRIPT.split(text)
    fields: dict[str, str] = {}
    for label, value in zip(parts[1::2], parts[2::2]):
        fields.setdefault(label, value.strip())
    return fields


def load_dir(directory: Path) -> Constitution:
    """Read every JSON/JSONL file in the directory and recognise each by its shape."""
    source = str(directory)
    constitution = Constitution(name=directory.name, source=source)
    for file in sorted(directory.iterdir()):
        if file.suffix not in (".json", ".jsonl"):
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # evaluation JSONL files and others that are not one JSON document
        _absorb_anthropic(constitution, data, str(file))
    validate(constitution)
    return constitution


def _absorb_anthropic(constitution: Constitution, data: Any, source: str) -> None:
    if isinstance(data, dict) and data and all(
        isinstance(v, dict) and "edit_request" in v for v in data.values()
    ):
        for key, entry in data.items():
            prompt = entry.get("prompt")
            critique = prompt[0] if isinstance(prompt, list) and prompt else prompt
            if not isinstance(critique, str) or not isinstance(entry["edit_request"], str):
                raise ConstitutionError(source, f"'{key}' needs a 'prompt' list and 'edit_request'")
            constitution.principles.append(Principle(
                id=str(key),
                critique=_strip_label(critique.strip().removesuffix("Critique:"), "CritiqueRequest"),
                revision=_strip_label(entry["edit_request"].strip().removesuffix("Revision:"),
                                      "RevisionRequest"),
            ))
        return
    if not isinstance(data, list) or not data:
        return
    if all(isinstance(x, dict) and {"prompt", "corrects", "incorrects"} <= x.keys() for x in data):
        for x in data:
            fields = _parse_transcript(x["prompt"])
            if "Human" not in fields or not x["corrects"] or not x["incorrects"]:
                continue  # an evaluation question rather than a few-shot example
            constitution.comparison_examples.append(ComparisonExample(
                prompt=fields["Human"], better=x["corrects"][0].strip(),
                worse=x["incorrects"][0].strip(),
                question="Which of these assistant responses is better?",
            ))
        return
    if all(isinstance(x, str) for x in data):
        if all(x.strip().endswith("Options:") for x in data):
            for i, text in enumerate(data):
                question = text.strip().removesuffix("Options:").strip()
                direction = "worse" if _WORSE.search(question) else "better"
                constitution.comparisons.append(ComparisonPrinciple(f"compare{i}", question, direction))
            return
        for text in data:
            fields = _parse_transcript(text)
            if set(_TRANSCRIPT_FIELDS) <= fields.keys():
                constitution.critique_examples.append(CritiqueExample(*[
                    fields[f] for f in _TRANSCRIPT_FIELDS
                ]))
