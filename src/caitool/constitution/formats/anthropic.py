"""Anthropic's released prompt files: a directory of JSON files, each recognised by its shape.

What each file holds (structure from the paper's supplementary material):

* critique/revision principles: ``{"id": {"prompt": ["\\n\\nCritiqueRequest: ...\\n\\nCritique:"],
  "edit_request": "\\n\\nRevisionRequest: ...\\n\\nRevision:"}}``;
* critique few-shot examples: a list of raw transcripts, several ``Human:``/``Assistant:``
  turns then ``CritiqueRequest:``, ``Critique:``, ``RevisionRequest:``, ``Revision:``;
* comparison principles: a list of strings, each ``"\\n<question> Options:"``;
* comparison few-shot examples: ``[{"prompt": "\\n\\nHuman: ...\\n\\nAssistant:",
  "corrects": [...], "incorrects": [...]}]``, which carry no principle: each is given one,
  sampled with a fixed seed, as the paper samples a principle per example;
* chain-of-thought examples: ``[{"prompt": <a whole worked example with {} where the
  principle goes>}]``, whose ``{}`` is filled with a sampled principle the same way.

Evaluation files (JSONL, one question per line) are not part of a constitution and are left
alone; any other JSON file is reported, so a renamed or unexpected file is never silently lost.
"""

from __future__ import annotations

import json
import logging
import random
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
    WorkedComparison,
    validate,
)

log = logging.getLogger(__name__)

_SECTIONS = ("Human", "Assistant", "CritiqueRequest", "Critique", "RevisionRequest", "Revision")
_SECTION = re.compile(r"(?:^|\n\n)(" + "|".join(_SECTIONS) + r"):")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_WORSE = re.compile(r"\bmore (harmful|toxic|dangerous|unethical|offensive|objectionable)\b|"
                    r"\bworse\b|\bless (ethical|harmless|appropriate)\b", re.IGNORECASE)
# The seed of the principles given to few-shot examples: fixed, so that every request of a
# run (and of every run) shows the same few-shot block, which a backend then computes once.
EXAMPLE_SEED = "anthropic-few-shot"


def _strip_label(text: str, label: str) -> str:
    text = text.strip()
    if text.startswith(label + ":"):
        text = text[len(label) + 1:]
    return text.strip()


def sections(text: str) -> list[tuple[str, str]]:
    """A raw transcript as its (label, text) sections, in order, every turn kept."""
    parts = _SECTION.split(text)
    return [(label, value.strip()) for label, value in zip(parts[1::2], parts[2::2], strict=True)]


def _turns(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The conversation's (role, content) turns; an empty last turn (the open ``Assistant:``
    of a question) is dropped."""
    turns = [(_ROLES[label], text) for label, text in found if label in _ROLES]
    return turns[:-1] if turns and not turns[-1][1] else turns


def _critique_example(text: str) -> CritiqueExample | None:
    found = sections(text)
    fields = dict(found[::-1])  # the first occurrence of each label wins
    turns = _turns([(label, value) for label, value in found
                    if label in _ROLES])
    if not set(_SECTIONS) <= fields.keys() or len(turns) < 2 or turns[-1][0] != "assistant" \
            or turns[-2][0] != "user":
        return None
    return CritiqueExample(
        prompt=turns[-2][1], response=turns[-1][1],
        critique_request=fields["CritiqueRequest"], critique=fields["Critique"],
        revision_request=fields["RevisionRequest"], revision=fields["Revision"],
        history=tuple(turns[:-2]),
    )


def load_dir(directory: Path) -> Constitution:
    """Read every JSON file in the directory and recognise each by its shape."""
    constitution = Constitution(name=directory.name, source=str(directory))
    pending_examples: list[dict[str, Any]] = []
    pending_worked: list[str] = []
    for file in sorted(directory.iterdir()):
        if file.suffix != ".json":
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConstitutionError(str(file), f"cannot parse: {exc}") from None
        if not _absorb(constitution, data, str(file), pending_examples, pending_worked):
            log.warning("constitution %s: %s is not a file caitool recognises (principles, "
                        "comparison principles or few-shot examples); ignored", directory, file.name)
    _give_principles(constitution, pending_examples, pending_worked)
    validate(constitution)
    return constitution


def _absorb(constitution: Constitution, data: Any, source: str,
            pending_examples: list[dict[str, Any]], pending_worked: list[str]) -> bool:
    """Take what one file holds into the constitution; False when its shape is unknown."""
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
        return True
    if not isinstance(data, list) or not data:
        return False
    if all(isinstance(x, dict) and isinstance(x.get("prompt"), str) for x in data):
        if all("{}" in x["prompt"] for x in data):
            pending_worked.extend(x["prompt"] for x in data)
            return True
        if all({"corrects", "incorrects"} <= x.keys() for x in data):
            pending_examples.extend(x for x in data if x["corrects"] and x["incorrects"])
            return True
        return False
    if all(isinstance(x, str) for x in data):
        if all(x.strip().endswith("Options:") for x in data):
            for i, text in enumerate(data):
                question = text.strip().removesuffix("Options:").strip()
                direction = "worse" if _WORSE.search(question) else "better"
                constitution.comparisons.append(ComparisonPrinciple(f"compare{i}", question, direction))
            return True
        examples = [_critique_example(text) for text in data]
        if all(examples):
            constitution.critique_examples.extend(examples)  # type: ignore[arg-type]
            return True
    return False


def _give_principles(constitution: Constitution, examples: list[dict[str, Any]],
                     worked: list[str]) -> None:
    """Few-shot comparisons carry no principle of their own: each gets one sampled from the
    comparison principles (once every file is read), with a fixed seed."""
    if not examples and not worked:
        return
    if not constitution.comparisons:
        log.warning("constitution %s: few-shot comparison examples but no comparison "
                    "principles; the examples are ignored", constitution.source)
        return
    rng = random.Random(EXAMPLE_SEED)
    for entry in examples:
        turns = _turns(sections(entry["prompt"]))
        if not turns or turns[-1][0] != "user":
            continue  # an evaluation question rather than a few-shot example
        principle = rng.choice(constitution.comparisons)
        constitution.comparison_examples.append(ComparisonExample(
            prompt=turns[-1][1], better=str(entry["corrects"][0]).strip(),
            worse=str(entry["incorrects"][0]).strip(), question=principle.question,
            direction=principle.direction, history=tuple(turns[:-1]),
        ))
    for text in worked:
        principle = rng.choice(constitution.comparisons)
        # The principle as the paper's instruction file writes it, in the placeholder.
        filled = text.replace("{}", f"\n{principle.question} Options:", 1)
        constitution.worked_comparisons.append(WorkedComparison(filled))
