"""Preference pairs in TRL's format, from a judge (``compare``) or by construction (``prefs``).

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
from caitool.judge import JudgeSettings, Judgment, PairItem, judge
from caitool.records import add_provenance, check_prompt, conversation, trl_prompt
from caitool.supervised import check_revisions

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


# -- input -----------------------------------------------------------------------------------


def check_for_compare(record: Record) -> str | None:
    problem = check_prompt(record)
    if problem:
        return problem
    responses = record.get("responses")
    if responses is None:
        hint = " (one 'response' is not enough)" if "response" in record else ""
        return (f"missing 'responses'{hint}: compare needs two or more, "
                "e.g. from 'caitool generate -n 2'")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        return "'responses' must be a list of strings"
    if len(responses) < 2:
        return (f"'responses' has {len(responses)} response{'s' if len(responses) != 1 else ''}; "
                "compare needs at least two (e.g. 'caitool generate -n 2')")
    return None


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


def compare(backend: Backend, constitution: Constitution, records: list[Record],
            settings: JudgeSettings, options: LabelOptions,
            provenance: dict[str, Any], skip_ids: set[str] | None = None) -> list[Record]:
    """Judge every pair of every record in one batch; one preference record per kept pair.
    ``skip_ids``: pair ids already written (a resumed run redoes no pair)."""
    jobs: list[tuple[Record, int, int, str]] = []
    for record in records:
        for i, j in pair_indices(len(record["responses"]), options.pairs):
            new_id = pair_id(str(record["id"]), i, j)
            if not skip_ids or new_id not in skip_ids:
                jobs.append((record, i, j, new_id))
    items = [PairItem(id=new_id, messages=conversation(record),
                      first=record["responses"][i], second=record["responses"][j])
             for record, i, j, new_id in jobs]
    judgments = judge(backend, constitution, items, settings)
    out = []
    for (record, i, j, new_id), judgment in zip(jobs, judgments, strict=True):
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
        add_provenance(result, "compare", {**provenance, "method": judgment.method})
        out.append(result)
    return out


# -- preferences by construction -----------------------------------------------------------------


def check_for_prefs(record: Record) -> str | None:
    problem = check_prompt(record) or check_revisions(record)
    if problem:
        return problem
    if not isinstance(record.get("initial_response"), str):
        return ("missing 'initial_response': prefs needs records from 'caitool critique' and "
                "'caitool revise'")
    revisions = record.get("revisions")
    if not revisions:
        return ("no revision to prefer ('revisions' is missing or empty); run "
                "'caitool critique' and 'caitool revise' first")
    if revisions[-1].get("revision") is None:
        return "the last critique has no revision yet; run 'caitool revise' first"
    return None


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
