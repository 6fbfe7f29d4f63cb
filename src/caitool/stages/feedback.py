"""Preference records in TRL's format, from a judge (``compare``) or by construction (``prefs``).

An output record is the input record with ``prompt`` in TRL's form (a string, or a list of
messages for a chat, in which case ``chosen`` and ``rejected`` are one-message assistant
lists), ``chosen``, ``rejected`` and ``p_chosen`` (the probability that ``chosen`` is the
better response, >= 0.5). ``messages`` moves into ``prompt`` and ``responses`` into the pair,
so TRL's trainers see exactly the preference keys they expect.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from caitool.backends.base import Backend
from caitool.constitution import Constitution
from caitool.io.stream import Bind, StepResult
from caitool.schema import add_provenance, conversation, trl_prompt
from caitool.stages.judging import JudgeSettings, Judgment, PairItem, judge_each, judge_format

Record = dict[str, Any]
PAIRINGS = ("all", "first")
# Fields that the output replaces: the pair stands for `responses`, `prompt` for `messages`.
CONSUMED = ("responses", "messages")


@dataclass
class LabelOptions:
    hard: bool = False            # p_chosen 1.0 (0.5 for a tie) instead of the soft label
    tie_threshold: float = 0.05   # |p - 0.5| below this marks a tie
    drop_ties: bool = False
    pairs: str = "all"            # "all": every pair i < j; "first": responses 0 and 1 only


# -- pairs -----------------------------------------------------------------------------------


def pair_indices(count: int, pairs: str) -> list[tuple[int, int]]:
    """Which responses are judged against which. The (0, 1) pair comes last: it carries the
    record's own id, and a record counts as done on ``--resume`` once that id is in the
    output, so every other pair of the record must already be written by then."""
    if pairs == "first":
        return [(0, 1)]
    others = [(i, j) for i in range(count) for j in range(i + 1, count) if (i, j) != (0, 1)]
    return [*others, (0, 1)]


def pair_id(record_id: str, i: int, j: int) -> str:
    return record_id if (i, j) == (0, 1) else f"{record_id}:{i}-{j}"


# -- output ------------------------------------------------------------------------------------


def _completion(record: Record, text: str) -> str | list[dict[str, str]]:
    """A response in the same form as the record's TRL prompt."""
    if isinstance(trl_prompt(record), list):
        return [{"role": "assistant", "content": text}]
    return text


def preference(record: Record, new_id: str, chosen: str, rejected: str,
               p_chosen: float) -> Record:
    """The preference record: TRL's fields first, then everything passed through."""
    owned = {"id", "prompt", "chosen", "rejected", "p_chosen", *CONSUMED}
    return {
        "id": new_id,
        "prompt": trl_prompt(record),
        "chosen": _completion(record, chosen),
        "rejected": _completion(record, rejected),
        "p_chosen": float(p_chosen),
        **{k: copy.deepcopy(v) for k, v in record.items() if k not in owned},
    }


def label(judgment: Judgment, options: LabelOptions) -> tuple[bool, float, bool]:
    """(first is chosen, p_chosen, tie) for one judged pair."""
    p_first = judgment.p_first
    tie = abs(p_first - 0.5) < options.tie_threshold
    first_chosen = p_first >= 0.5
    p_chosen = max(p_first, 1.0 - p_first)
    if options.hard:
        p_chosen = 0.5 if tie else 1.0
    return first_chosen, p_chosen, tie


def provenance(backend: Backend, constitution: Constitution, settings: JudgeSettings,
               options: LabelOptions) -> dict[str, Any]:
    clamp = settings.effective_clamp()
    return {
        **backend.describe(), "format": judge_format(backend, settings),
        "constitution": constitution.name, "principles": settings.principles,
        "both_orders": settings.both_orders, "cot": settings.cot,
        "clamp": list(clamp) if clamp else None, "seed": settings.seed,
        "labels": "hard" if options.hard else "soft", "tie_threshold": options.tie_threshold,
    }


def compare(backend: Backend, constitution: Constitution, records: list[Record],
            settings: JudgeSettings, options: LabelOptions,
            skip_ids: set[str] | None = None) -> StepResult:
    """Judge every pair of every record in one batch; one preference record per kept pair.
    ``skip_ids``: pair ids already written (a resumed run redoes no pair).

    A pair whose judging failed for good is left out and its record named in the result's
    ``failed``, with the reason. The record's (0, 1) pair, which carries its id, is then
    held back too, even if it was judged: ``--resume`` counts a record done once its id is
    written, so the record must stay undone until all its pairs are. Its other pairs that
    were judged are written, and the resumed run skips them and judges only the rest."""
    jobs: list[tuple[Record, int, int, str]] = []
    for record in records:
        for i, j in pair_indices(len(record["responses"]), options.pairs):
            new_id = pair_id(str(record["id"]), i, j)
            if not skip_ids or new_id not in skip_ids:
                jobs.append((record, i, j, new_id))
    items = [PairItem(id=new_id, messages=conversation(record),
                      first=record["responses"][i], second=record["responses"][j])
             for record, i, j, new_id in jobs]
    judgments, failures = judge_each(backend, constitution, items, settings)
    failed: dict[str, str] = {}
    for index, reason in sorted(failures.items()):
        record, i, j, _ = jobs[index]
        where = "" if (i, j) == (0, 1) else f"pair {i}-{j}: "
        failed.setdefault(str(record["id"]), where + reason)
    about = provenance(backend, constitution, settings, options) if jobs else {}
    out = []
    for (record, i, j, new_id), judgment in zip(jobs, judgments, strict=True):
        if judgment is None or (new_id == str(record["id"]) and new_id in failed):
            continue
        first_chosen, p_chosen, tie = label(judgment, options)
        if tie and options.drop_ties:
            continue
        first, second = record["responses"][i], record["responses"][j]
        chosen, rejected = (first, second) if first_chosen else (second, first)
        result = preference(record, new_id, chosen, rejected, p_chosen)
        result.update({
            "tie": tie,
            "orders_agree": judgment.agree,
            "pair": [i, j],
            "judgments": judgment.details,
        })
        add_provenance(result, "compare", {**about, "method": judgment.method})
        out.append(result)
    return StepResult(out, failed)


def compare_step(constitution: Constitution, settings: JudgeSettings, options: LabelOptions) -> Bind:
    """:func:`compare` as the batch loop runs it, skipping the pairs a resumed run wrote."""
    def bind(backend: Backend) -> Any:
        return lambda batch: compare(backend, constitution, batch, settings, options,
                                     skip_ids=batch.written)
    return bind


# -- preferences by construction -----------------------------------------------------------------


def by_construction(record: Record) -> Record | None:
    """Final revision preferred over the initial response, no judge; None when the two are
    the same text (a pair that teaches nothing)."""
    chosen = record["revisions"][-1]["revision"]
    rejected = record["initial_response"]
    if chosen.strip() == rejected.strip():
        return None
    result = preference(record, str(record["id"]), chosen, rejected, 1.0)
    add_provenance(result, "prefs", {"rule": "final revision over initial response",
                                     "rounds": len(record["revisions"])})
    return result


def prefs(records: list[Record], unchanged: list[str]) -> StepResult:
    """Preference records by construction; the ids of records whose revision is their
    initial response are added to ``unchanged`` (they give no pair)."""
    out = []
    for record in records:
        result = by_construction(record)
        if result is None:
            unchanged.append(str(record["id"]))
        else:
            out.append(result)
    return StepResult(out)
