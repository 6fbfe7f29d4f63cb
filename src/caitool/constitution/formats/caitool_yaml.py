"""caitool's own YAML: critique_revision, comparison and few_shot (see constitutions/harmless.yaml)."""

from __future__ import annotations

from typing import Any

from caitool.constitution.model import (
    DIRECTIONS,
    ComparisonExample,
    ComparisonPrinciple,
    Constitution,
    ConstitutionError,
    CritiqueExample,
    Principle,
    WorkedComparison,
    list_field,
    text_field,
)


def load(data: dict[str, Any], source: str, default_name: str) -> Constitution:
    principles = [
        Principle(
            id=str(text_field(entry, "id", f"critique_revision[{i}]", source)),
            critique=text_field(entry, "critique", f"critique_revision[{i}]", source),
            revision=text_field(entry, "revision", f"critique_revision[{i}]", source),
        )
        for i, entry in enumerate(list_field(data, "critique_revision", source))
    ]
    comparisons = []
    for i, entry in enumerate(list_field(data, "comparison", source)):
        where = f"comparison[{i}]"
        direction = (entry.get("direction") or "better") if isinstance(entry, dict) else "better"
        if direction not in DIRECTIONS:
            raise ConstitutionError(source, f"{where}.direction must be 'better' or 'worse'")
        comparisons.append(ComparisonPrinciple(
            id=text_field(entry, "id", where, source),
            question=text_field(entry, "question", where, source),
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
    for i, entry in enumerate(list_field(few_shot, "critique_revision", source)):
        where = f"few_shot.critique_revision[{i}]"
        principle = _principle_ref(entry, by_id, where, source)
        constitution.critique_examples.append(CritiqueExample(
            prompt=text_field(entry, "prompt", where, source),
            response=text_field(entry, "response", where, source),
            critique_request=text_field(entry, "critique_request", where, source, required=False)
            or principle.critique,
            critique=text_field(entry, "critique", where, source),
            revision_request=text_field(entry, "revision_request", where, source, required=False)
            or principle.revision,
            revision=text_field(entry, "revision", where, source),
            history=_history(entry, where, source),
        ))
    comparisons_by_id = {p.id: p for p in comparisons}
    for i, entry in enumerate(list_field(few_shot, "comparison", source)):
        where = f"few_shot.comparison[{i}]"
        question = text_field(entry, "question", where, source, required=False)
        direction = entry.get("direction") or "better"
        if direction not in DIRECTIONS:
            raise ConstitutionError(source, f"{where}.direction must be 'better' or 'worse'")
        if not question:
            ref = text_field(entry, "principle", where, source)
            if ref not in comparisons_by_id:
                raise ConstitutionError(source, f"{where}.principle '{ref}' is not a comparison id")
            question = comparisons_by_id[ref].question
            direction = comparisons_by_id[ref].direction
        constitution.comparison_examples.append(ComparisonExample(
            prompt=text_field(entry, "prompt", where, source),
            better=text_field(entry, "better", where, source),
            worse=text_field(entry, "worse", where, source),
            question=question,
            direction=direction,
            reasoning=text_field(entry, "reasoning", where, source, required=False),
            history=_history(entry, where, source),
        ))
    constitution.worked_comparisons = [
        WorkedComparison(text) for text in _strings(few_shot, "cot", source)
    ]
    judge = data.get("judge") or {}
    if not isinstance(judge, dict):
        raise ConstitutionError(source, "'judge' must be a mapping (frame, answer_cue)")
    constitution.judge_frame = text_field(judge, "frame", "judge", source, required=False) \
        or constitution.judge_frame
    constitution.answer_cue = text_field(judge, "answer_cue", "judge", source, required=False) \
        or constitution.answer_cue
    return constitution


def _history(entry: dict[str, Any], where: str, source: str) -> tuple[tuple[str, str], ...]:
    """Earlier turns of an example's conversation: a list of {role, content} messages."""
    turns = []
    for i, message in enumerate(list_field(entry, "history", source)):
        role = text_field(message, "role", f"{where}.history[{i}]", source)
        if role not in ("user", "assistant", "system"):
            raise ConstitutionError(source, f"{where}.history[{i}].role must be user, assistant "
                                            f"or system, not '{role}'")
        turns.append((role, text_field(message, "content", f"{where}.history[{i}]", source)))
    return tuple(turns)


def _strings(data: dict[str, Any], key: str, source: str) -> list[str]:
    values = list_field(data, key, source)
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ConstitutionError(source, f"few_shot.{key}[{i}] must be a non-empty string")
    return values


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
