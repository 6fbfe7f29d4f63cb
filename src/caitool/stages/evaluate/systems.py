"""Systems' responses to the same prompts, joined on id and judged pair by pair.

A system is a JSONL file of records with an ``id``, the prompt (``prompt`` or ``messages``)
and one ``response`` (``caitool generate``, or the supervised stage, run with some model).
Every pair of systems is judged on the prompts both answered, in both orders, under a
constitution's comparison principles; the results are :class:`statistics.Outcome` values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, InputError
from caitool.io.jsonl import iter_records, source_name
from caitool.schema import check_revised, check_system_answer, conversation, ensure_id
from caitool.stages.evaluate.statistics import Outcome
from caitool.stages.judging import JudgeSettings, Judgment, PairItem, judge

Record = dict[str, Any]


@dataclass
class System:
    name: str
    path: str
    records: dict[str, Record] = field(default_factory=dict)  # id -> record, in file order


def load_system(path: str, name: str) -> System:
    system = System(name=name, path=source_name(path))
    for lineno, record in iter_records(path, check_system_answer):
        record_id = ensure_id(record)
        if record_id in system.records:
            raise InputError(system.path, lineno, f"duplicate id '{record_id}'")
        system.records[record_id] = record
    if not system.records:
        raise CaitoolError(f"{system.path}: no records")
    return system


def revision_systems(path: str) -> list[System]:
    """A file of supervised records as two systems on the same prompts: each record's
    initial response ("initial") and its final revision ("revised")."""
    source = source_name(path)
    initial, revised = System("initial", source), System("revised", source)
    for lineno, record in iter_records(path, check_revised):
        record_id = ensure_id(record)
        if record_id in initial.records:
            raise InputError(source, lineno, f"duplicate id '{record_id}'")
        initial.records[record_id] = {**record, "response": record["initial_response"]}
        revised.records[record_id] = {**record, "response": record["revisions"][-1]["revision"]}
    if not initial.records:
        raise CaitoolError(f"{source}: no records")
    return [initial, revised]


def default_names(paths: Sequence[str]) -> list[str]:
    """File stems, or the paths themselves where stems collide (run1/out vs run2/out)."""
    stems = ["stdin" if p == "-" else Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [source_name(p) for p in paths]


def shared_ids(a: System, b: System) -> list[str]:
    """Ids both systems answered, in ``a``'s order; their prompts must agree."""
    ids = [record_id for record_id in a.records if record_id in b.records]
    for record_id in ids:
        if conversation(a.records[record_id]) != conversation(b.records[record_id]):
            raise CaitoolError(f"id '{record_id}' has different prompts in {a.path} and {b.path}")
    if not ids:
        raise CaitoolError(f"{a.path} and {b.path} share no record ids")
    return ids


def pairs(systems: Sequence[System]) -> list[tuple[System, System, list[str]]]:
    return [(a, b, shared_ids(a, b)) for a, b in combinations(systems, 2)]


def outcome(record_id: str, a: System, b: System, judgment: Judgment) -> Outcome:
    """A judgment of (a's response, b's response) as an outcome about ``a``: the judge's
    probabilities are all about the first response it was given (see Judgment)."""
    details = [{"principle": d["principle"], "order": d["order"], "p_a": d["p_first"]}
               for d in judgment.details]
    return Outcome(id=record_id, a=a.name, b=b.name, p=float(judgment.p_first),
                   details=details, agree=bool(judgment.agree))


def judge_pair(backend, constitution, a: System, b: System, ids: Sequence[str],
               settings: JudgeSettings, batch_size: int = 16,
               advance: Callable[[int], None] = lambda n: None) -> list[Outcome]:
    """Judge ``a`` against ``b`` on ``ids``; each outcome's ``p`` is P(a's response is better)."""
    outcomes: list[Outcome] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        items = [PairItem(id=record_id, messages=conversation(a.records[record_id]),
                          first=a.records[record_id]["response"],
                          second=b.records[record_id]["response"])
                 for record_id in chunk]
        judged = judge(backend, constitution, items, settings)
        outcomes += [outcome(record_id, a, b, judgment)
                     for record_id, judgment in zip(chunk, judged, strict=True)]
        advance(len(chunk))
    return outcomes
