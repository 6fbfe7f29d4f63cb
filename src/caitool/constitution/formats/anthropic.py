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
A file is told by its entries' shape; once told, every entry must fit it, so a damaged
entry is an error naming the file, never a file quietly left out. A file under one of the
released names must have its shape.
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
from caitool.io import files

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


# The released files by name, and the kind each holds: a file of one of these names whose
# shape is none caitool knows is a damaged file, not an extra one.
KNOWN_FILES = {
    "CritiqueRevisionInstructions.json": "principles",
    "CritiqueRevisionFewShotPrompts.json": "critique_examples",
    "RLMadisonInstructions.json": "comparisons",
    "RLMadisonFewShotPrompts.json": "comparison_examples",
    "RLMadisonPrecogFewShotPrompts.json": "worked",
}
KINDS = {
    "principles": "critique/revision principles ({id: {prompt: [text], edit_request: text}})",
    "critique_examples": "critique few-shot examples (a list of Human:/Assistant:/CritiqueRequest:/"
                         "Critique:/RevisionRequest:/Revision: transcripts)",
    "comparisons": "comparison principles (a list of strings ending in 'Options:')",
    "comparison_examples": "comparison few-shot examples (a list of {prompt, corrects, incorrects})",
    "worked": "chain-of-thought examples (a list of {prompt} with {} for the principle)",
}


def load_dir(directory: Path) -> Constitution:
    """Read every JSON file in the directory and recognise each by its shape."""
    constitution = Constitution(name=directory.name, source=str(directory))
    pending_examples: list[dict[str, Any]] = []
    pending_worked: list[str] = []
    entries = sorted(directory.iterdir())
    _refuse_yaml(directory, entries)
    for file in entries:
        if file.suffix != ".json":
            continue
        try:
            data = json.loads(files.read_text(str(file), "constitution file"))
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSON syntax and integers too long to convert.
            problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ConstitutionError(str(file), f"cannot parse: {problem}") from None
        kind = _kind(data)
        if kind is None and file.name in KNOWN_FILES:
            raise ConstitutionError(str(file), f"expected {KINDS[KNOWN_FILES[file.name]]}, got "
                                               f"{_shape(data)}")
        if kind is None:
            log.warning("constitution %s: %s is not a file caitool recognises (principles, "
                        "comparison principles or few-shot examples); ignored", directory, file.name)
            continue
        _absorb(constitution, kind, data, str(file), pending_examples, pending_worked)
    _give_principles(constitution, pending_examples, pending_worked)
    validate(constitution)
    return constitution


def _refuse_yaml(directory: Path, entries: list[Path]) -> None:
    """A YAML file in a directory is most likely a caitool constitution that was meant, so
    it is named rather than passed over."""
    yamls = [f.name for f in entries if f.suffix in (".yaml", ".yml")]
    if not yamls:
        return
    why = (f"a directory is read as Anthropic's released JSON files; to use {yamls[0]}, give "
           f"the file itself (-c {directory / yamls[0]})")
    if not any(f.suffix == ".json" for f in entries):
        raise ConstitutionError(str(directory), f"holds {', '.join(yamls)}, but {why}")
    log.warning("constitution %s: %s ignored: %s", directory, ", ".join(yamls), why)


def _shape(data: Any) -> str:
    if isinstance(data, (dict, list)) and not data:
        return f"an empty {'object' if isinstance(data, dict) else 'list'}"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(data), "a number")


def _kind(data: Any) -> str | None:
    """What a file holds, told by the first entry that has a known shape (every entry is
    then held to it); None when no entry has one."""
    if isinstance(data, dict):
        if any(isinstance(v, dict) and "edit_request" in v for v in data.values()):
            return "principles"
        return None
    if not isinstance(data, list):
        return None
    dicts = [x for x in data if isinstance(x, dict)]
    strings = [x for x in data if isinstance(x, str)]
    if any("corrects" in x or "incorrects" in x for x in dicts):
        return "comparison_examples"
    if any(isinstance(x.get("prompt"), str) and "{}" in x["prompt"] for x in dicts):
        return "worked"
    if any(x.strip().endswith("Options:") for x in strings):
        return "comparisons"
    if any(_critique_example(x) is not None for x in strings):
        return "critique_examples"
    return None


def _text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _absorb(constitution: Constitution, kind: str, data: Any, source: str,
            pending_examples: list[dict[str, Any]], pending_worked: list[str]) -> None:
    """Take what one file holds into the constitution; an entry that does not fit the
    file's kind is an error naming the file and the entry."""
    if kind == "principles":
        for key, entry in data.items():
            prompt = entry.get("prompt") if isinstance(entry, dict) else None
            critique = prompt[0] if isinstance(prompt, list) and prompt else prompt
            if not isinstance(critique, str) or not isinstance(entry.get("edit_request"), str):
                raise ConstitutionError(source, f"'{key}' needs a 'prompt' list and 'edit_request'")
            constitution.principles.append(Principle(
                id=str(key),
                critique=_strip_label(critique.strip().removesuffix("Critique:"), "CritiqueRequest"),
                revision=_strip_label(entry["edit_request"].strip().removesuffix("Revision:"),
                                      "RevisionRequest"),
            ))
        return
    for i, entry in enumerate(data):
        if kind == "comparison_examples" and not (
                isinstance(entry, dict) and isinstance(entry.get("prompt"), str)
                and _text_list(entry.get("corrects")) and _text_list(entry.get("incorrects"))):
            raise ConstitutionError(source, f"entry {i} needs a string 'prompt' and lists of "
                                            "strings 'corrects' and 'incorrects'")
        if kind == "worked" and not (isinstance(entry, dict) and isinstance(entry.get("prompt"), str)
                                     and "{}" in entry["prompt"]):
            raise ConstitutionError(source, f"entry {i} needs a string 'prompt' with {{}} where "
                                            "the principle goes")
        if kind == "comparisons" and not (isinstance(entry, str)
                                          and entry.strip().endswith("Options:")):
            raise ConstitutionError(source, f"entry {i} must be a string ending in 'Options:'")
        if kind == "critique_examples" and not (isinstance(entry, str)
                                                and _critique_example(entry) is not None):
            raise ConstitutionError(source, f"entry {i} is not a critique example (Human: and "
                                            "Assistant: turns, then CritiqueRequest:, Critique:, "
                                            "RevisionRequest: and Revision:)")
    if kind == "comparison_examples":
        pending_examples.extend(x for x in data if x["corrects"] and x["incorrects"])
    elif kind == "worked":
        pending_worked.extend(x["prompt"] for x in data)
    elif kind == "comparisons":
        for i, text in enumerate(data):
            question = text.strip().removesuffix("Options:").strip()
            direction = "worse" if _WORSE.search(question) else "better"
            constitution.comparisons.append(ComparisonPrinciple(f"compare{i}", question, direction))
    else:
        constitution.critique_examples.extend(_critique_example(text) for text in data)  # type: ignore[misc]


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
