"""Constitutions: principles for critique/revision and comparison, and few-shot examples.

The project's own format is YAML (see ``constitutions/harmless.yaml``). Formats that users
already hold load too: Anthropic's released prompt files (a directory of JSON files),
Hugging Face's CAI recipe JSON, and LangChain-style principle lists.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from caitool.errors import CaitoolError

DIRECTIONS = ("better", "worse")


@dataclass(frozen=True)
class Principle:
    """A critique request and the revision request paired with it."""

    id: str
    critique: str
    revision: str


@dataclass(frozen=True)
class ComparisonPrinciple:
    """A question put to a judge; ``direction='worse'`` asks for the worse response."""

    id: str
    question: str
    direction: str = "better"

    @property
    def inverted(self) -> bool:
        return self.direction == "worse"


@dataclass(frozen=True)
class CritiqueExample:
    prompt: str
    response: str
    critique_request: str
    critique: str
    revision_request: str
    revision: str


@dataclass(frozen=True)
class ComparisonExample:
    prompt: str
    better: str
    worse: str
    question: str
    direction: str = "better"


@dataclass
class Constitution:
    name: str
    description: str = ""
    principles: list[Principle] = field(default_factory=list)
    comparisons: list[ComparisonPrinciple] = field(default_factory=list)
    critique_examples: list[CritiqueExample] = field(default_factory=list)
    comparison_examples: list[ComparisonExample] = field(default_factory=list)
    source: str = ""

    def principle(self, principle_id: str) -> Principle:
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        raise CaitoolError(f"constitution '{self.name}' has no critique principle '{principle_id}'")

    def comparison(self, principle_id: str) -> ComparisonPrinciple:
        for principle in self.comparisons:
            if principle.id == principle_id:
                return principle
        raise CaitoolError(f"constitution '{self.name}' has no comparison principle '{principle_id}'")

    def require_principles(self) -> None:
        if not self.principles:
            raise CaitoolError(f"constitution '{self.name}' has no critique/revision principles")

    def require_comparisons(self) -> None:
        if not self.comparisons:
            raise CaitoolError(f"constitution '{self.name}' has no comparison principles")

    def to_dict(self) -> dict[str, Any]:
        """The constitution in caitool's YAML layout (what ``constitution show`` prints)."""
        return {
            "name": self.name,
            "description": self.description,
            "critique_revision": [asdict(p) for p in self.principles],
            "comparison": [asdict(p) for p in self.comparisons],
            "few_shot": {
                "critique_revision": [asdict(e) for e in self.critique_examples],
                "comparison": [asdict(e) for e in self.comparison_examples],
            },
        }


class ConstitutionError(CaitoolError):
    def __init__(self, source: str, problem: str):
        super().__init__(f"constitution {source}: {problem}")


# -- finding constitutions -----------------------------------------------------------------


def search_path() -> list[Path]:
    """Where ``-c NAME`` looks: $CAITOOL_CONSTITUTIONS, the installed package, the checkout."""
    paths = [Path(p) for p in os.environ.get("CAITOOL_CONSTITUTIONS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    paths += [here / "constitutions", here.parent.parent / "constitutions"]
    return [p for p in paths if p.is_dir()]


def builtin_names() -> list[str]:
    names: dict[str, None] = {}
    for directory in search_path():
        for file in sorted(directory.glob("*.y*ml")):
            names.setdefault(file.stem, None)
    return list(names)


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    for directory in search_path():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name_or_path}{suffix}"
            if candidate.exists():
                return candidate
    known = ", ".join(builtin_names()) or "none found"
    raise CaitoolError(f"unknown constitution '{name_or_path}' (built-in: {known}; or give a path)")


def load(name_or_path: str) -> Constitution:
    """Load a built-in by name, or a file or directory in any supported format."""
    path = resolve(name_or_path)
    if path.is_dir():
        return load_anthropic_dir(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConstitutionError(source, "not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConstitutionError(source, f"line {exc.lineno}: cannot parse: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConstitutionError(source, f"{where}cannot parse: {problem}") from None
    constitution = from_data(data, source, default_name=path.stem)
    validate(constitution)
    return constitution


def from_data(data: Any, source: str, default_name: str) -> Constitution:
    """Recognise the format of already-parsed data."""
    if isinstance(data, dict) and "constitutions" in data:
        return from_hf_recipe(data, source, default_name)
    if isinstance(data, list) or (isinstance(data, dict) and _looks_langchain(data)):
        return from_langchain(data, source, default_name)
    if isinstance(data, dict) and ("critique_revision" in data or "comparison" in data):
        return from_caitool(data, source, default_name)
    raise ConstitutionError(
        source,
        "unrecognised format (expected caitool YAML with 'critique_revision'/'comparison', "
        "a Hugging Face recipe with 'constitutions', or a LangChain principle list)",
    )


# -- caitool's YAML ------------------------------------------------------------------------


def _text(entry: Any, key: str, where: str, source: str, required: bool = True) -> str:
    if not isinstance(entry, dict):
        raise ConstitutionError(source, f"{where} must be a mapping")
    value = entry.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ConstitutionError(source, f"{where} needs a non-empty string '{key}'")
    return value.strip()


def _list(data: dict[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ConstitutionError(source, f"'{key}' must be a list")
    return value


def from_caitool(data: dict[str, Any], source: str, default_name: str) -> Constitution:
    principles = [
        Principle(
            id=str(_text(entry, "id", f"critique_revision[{i}]", source)),
            critique=_text(entry, "critique", f"critique_revision[{i}]", source),
            revision=_text(entry, "revision", f"critique_revision[{i}]", source),
        )
        for i, entry in enumerate(_list(data, "critique_revision", source))
    ]
    comparisons = []
    for i, entry in enumerate(_list(data, "comparison", source)):
        where = f"comparison[{i}]"
        direction = (entry.get("direction") or "better") if isinstance(entry, dict) else "better"
        if direction not in DIRECTIONS:
            raise ConstitutionError(source, f"{where}.direction must be 'better' or 'worse'")
        comparisons.append(ComparisonPrinciple(
            id=_text(entry, "id", where, source),
            question=_text(entry, "question", where, source),
            direction=direction,
        ))
    constitution = Constitution(
        name=str(data.get("name") or default_name),
        description=str(data.get("description") or "").strip(),
        principles=principles,
        comparisons=comparisons,
        source=source,
    )
    few_shot = data.get("few_shot") or {}
    if not isinstance(few_shot, dict):
        raise ConstitutionError(source, "'few_shot' must be a mapping")
    by_id = {p.id: p for p in principles}
    for i, entry in enumerate(_list(few_shot, "critique_revision", source)):
        where = f"few_shot.critique_revision[{i}]"
        principle = _principle_ref(entry, by_id, where, source)
        constitution.critique_examples.append(CritiqueExample(
            prompt=_text(entry, "prompt", where, source),
            response=_text(entry, "response", where, source),
            critique_request=_text(entry, "critique_request", where, source, required=False)
            or principle.critique,
            critique=_text(entry, "critique", where, source),
            revision_request=_text(entry, "revision_request", where, source, required=False)
            or principle.revision,
            revision=_text(entry, "revision", where, source),
        ))
    comparisons_by_id = {p.id: p for p in comparisons}
    for i, entry in enumerate(_list(few_shot, "comparison", source)):
        where = f"few_shot.comparison[{i}]"
        question = _text(entry, "question", where, source, required=False)
        direction = "better"
        if not question:
            ref = _text(entry, "principle", where, source)
            if ref not in comparisons_by_id:
                raise ConstitutionError(source, f"{where}.principle '{ref}' is not a comparison id")
            question = comparisons_by_id[ref].question
            direction = comparisons_by_id[ref].direction
        constitution.comparison_examples.append(ComparisonExample(
            prompt=_text(entry, "prompt", where, source),
            better=_text(entry, "better", where, source),
            worse=_text(entry, "worse", where, source),
            question=question,
            direction=direction,
        ))
    return constitution


def _principle_ref(entry: Any, by_id: dict[str, Principle], where: str, source: str) -> Principle:
    if isinstance(entry, dict) and entry.get("principle") is not None:
        ref = str(entry["principle"])
        if ref not in by_id:
            raise ConstitutionError(source, f"{where}.principle '{ref}' is not a critique_revision id")
        return by_id[ref]
    if isinstance(entry, dict) and entry.get("critique_request") and entry.get("revision_request"):
        return Principle("inline", entry["critique_request"], entry["revision_request"])
    raise ConstitutionError(
        source, f"{where} needs 'principle' (an id) or 'critique_request' and 'revision_request'"
    )


def validate(constitution: Constitution) -> None:
    source = constitution.source or constitution.name
    if not constitution.principles and not constitution.comparisons:
        raise ConstitutionError(source, "has neither critique/revision nor comparison principles")
    for kind, items in (("critique_revision", constitution.principles),
                        ("comparison", constitution.comparisons)):
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise ConstitutionError(source, f"duplicate {kind} id '{item.id}'")
            seen.add(item.id)


# -- Hugging Face's CAI recipe -------------------------------------------------------------


def from_hf_recipe(data: dict[str, Any], source: str, default_name: str) -> Constitution:
    pairs = data.get("constitutions")
    if not isinstance(pairs, list):
        raise ConstitutionError(source, "'constitutions' must be a list of {critic, revision}")
    principles = [
        Principle(
            id=f"hf-{i}",
            critique=_text(entry, "critic", f"constitutions[{i}]", source),
            revision=_text(entry, "revision", f"constitutions[{i}]", source),
        )
        for i, entry in enumerate(pairs)
    ]
    examples = []
    for i, chat in enumerate(data.get("system_chat") or []):
        turns = [m.get("content", "") for m in chat if isinstance(m, dict)] if isinstance(chat, list) else []
        if len(turns) < 6:
            raise ConstitutionError(source, f"system_chat[{i}] needs 6 turns (ask, answer, "
                                    "critique request, critique, revision request, revision)")
        examples.append(CritiqueExample(*[t.strip() for t in turns[:6]]))
    return Constitution(name=default_name, principles=principles, critique_examples=examples,
                        source=source)


# -- LangChain-style principle lists -------------------------------------------------------


def _looks_langchain(data: dict[str, Any]) -> bool:
    return bool(data) and all(
        isinstance(v, dict) and "critique_request" in v for v in data.values()
    )


def from_langchain(data: Any, source: str, default_name: str) -> Constitution:
    entries = (
        [dict(v, name=v.get("name", k)) for k, v in data.items()] if isinstance(data, dict) else data
    )
    principles = []
    for i, entry in enumerate(entries):
        where = f"principle {i}"
        principles.append(Principle(
            id=str(_text(entry, "name", where, source, required=False) or f"principle-{i}"),
            critique=_text(entry, "critique_request", where, source),
            revision=_text(entry, "revision_request", where, source),
        ))
    return Constitution(name=default_name, principles=principles, source=source)


# -- Anthropic's released prompt files ------------------------------------------------------

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


def load_anthropic_dir(directory: Path) -> Constitution:
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
