"""What a constitution is: critique/revision principles, comparison principles, few-shot
examples; and the field checks every format's loader shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from caitool.errors import CaitoolError

DIRECTIONS = ("better", "worse")
# The judge's question opens with this sentence and ends with this cue, in the paper's words
# (a constitution may say otherwise: ``judge: {frame: ..., answer_cue: ...}`` in YAML).
DEFAULT_FRAME = "Consider the following conversation between a human and an assistant:"
DEFAULT_ANSWER_CUE = "The answer is:"
Turns = tuple[tuple[str, str], ...]


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
    """A worked critique and revision of ``response``, the answer to ``prompt``; ``history``
    holds the (role, content) turns of the conversation before ``prompt``, if any."""

    prompt: str
    response: str
    critique_request: str
    critique: str
    revision_request: str
    revision: str
    history: Turns = ()

    def messages(self) -> list[dict[str, str]]:
        return _messages(self.history, self.prompt)


@dataclass(frozen=True)
class ComparisonExample:
    """A judged pair: ``better`` and ``worse`` answers to ``prompt`` (after ``history``)
    under ``question``; ``reasoning`` is the step-by-step judgement shown under --cot."""

    prompt: str
    better: str
    worse: str
    question: str
    direction: str = "better"
    reasoning: str = ""
    history: Turns = ()

    def messages(self) -> list[dict[str, str]]:
        return _messages(self.history, self.prompt)


@dataclass(frozen=True)
class WorkedComparison:
    """A whole chain-of-thought judging example as a raw transcript (Anthropic's CoT file):
    the question with its principle filled in, the reasoning and the answer."""

    text: str


def _messages(history: Turns, prompt: str) -> list[dict[str, str]]:
    return [*({"role": role, "content": content} for role, content in history),
            {"role": "user", "content": prompt}]


@dataclass
class Constitution:
    name: str
    description: str = ""
    principles: list[Principle] = field(default_factory=list)
    comparisons: list[ComparisonPrinciple] = field(default_factory=list)
    critique_examples: list[CritiqueExample] = field(default_factory=list)
    comparison_examples: list[ComparisonExample] = field(default_factory=list)
    worked_comparisons: list[WorkedComparison] = field(default_factory=list)
    judge_frame: str = DEFAULT_FRAME
    answer_cue: str = DEFAULT_ANSWER_CUE
    source: str = ""

    def principle(self, principle_id: str) -> Principle:
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        raise CaitoolError(f"constitution '{self.name}' has no critique principle '{principle_id}'")

    def require_principles(self) -> None:
        if not self.principles:
            raise CaitoolError(f"constitution '{self.name}' has no critique/revision principles")

    def require_comparisons(self) -> None:
        if not self.comparisons:
            raise CaitoolError(f"constitution '{self.name}' has no comparison principles")

    def to_dict(self) -> dict[str, Any]:
        """The constitution in caitool's YAML layout (what ``constitution show`` prints)."""
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        if (self.judge_frame, self.answer_cue) != (DEFAULT_FRAME, DEFAULT_ANSWER_CUE):
            data["judge"] = {"frame": self.judge_frame, "answer_cue": self.answer_cue}
        data.update({
            "critique_revision": [asdict(p) for p in self.principles],
            "comparison": [asdict(p) for p in self.comparisons],
            "few_shot": {
                "critique_revision": [_example_dict(e) for e in self.critique_examples],
                "comparison": [_example_dict(e) for e in self.comparison_examples],
            },
        })
        if self.worked_comparisons:
            data["few_shot"]["cot"] = [e.text for e in self.worked_comparisons]
        return data


def _example_dict(example: CritiqueExample | ComparisonExample) -> dict[str, Any]:
    """An example as the YAML layout writes it: earlier turns as messages, empty fields left out."""
    data = asdict(example)
    data["history"] = [{"role": role, "content": content} for role, content in example.history]
    return {key: value for key, value in data.items() if value not in ("", [])}


class ConstitutionError(CaitoolError):
    def __init__(self, source: str, problem: str):
        super().__init__(f"constitution {source}: {problem}")


def text_field(entry: Any, key: str, where: str, source: str, required: bool = True) -> str:
    if not isinstance(entry, dict):
        raise ConstitutionError(source, f"{where} must be a mapping")
    value = entry.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ConstitutionError(source, f"{where} needs a non-empty string '{key}'")
    return value.strip()


def list_field(data: dict[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ConstitutionError(source, f"'{key}' must be a list")
    return value


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
