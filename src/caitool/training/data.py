"""Training data: reading checked records, and what the trainers do with whole datasets.

Every input line is checked (by a :mod:`caitool.schema` check) while it is read, so a bad
record is reported as ``file:line: problem`` before a model or tokenizer is loaded.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.io.jsonl import iter_records, source_name
from caitool.schema import PreferenceExample, preference_example

Record = dict[str, Any]


@dataclass
class Source:
    """One input file's records, and its name as messages and metrics give it."""

    name: str
    records: list[Record]
    lines: list[int] = field(default_factory=list)  # each record's line in the file


def read_sources(command: str, paths: list[str], validate: Callable[[Record], str | None],
                 skip_invalid: bool = False) -> list[Source]:
    """The records of each of ``paths`` (``-`` is stdin), each checked, file by file; an
    error if there are none at all. A file may be empty when others are not (warned)."""
    sources: list[Source] = []

    def skipped(error: InputError) -> None:
        console.warn(command, f"skipped {error}")

    for path in paths or ["-"]:
        if path == "-" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise CaitoolError("under accelerate launch or torchrun, name the input files: "
                               "stdin reaches one process only")
        numbered = list(iter_records(path, validate, skip_invalid=skip_invalid, on_skip=skipped))
        sources.append(Source(source_name(path), [record for _, record in numbered],
                              [line for line, _ in numbered]))
    if not any(source.records for source in sources):
        names = ", ".join(source.name for source in sources)
        raise CaitoolError(f"{names}: no training examples (the input is empty)")
    for source in sources:
        if not source.records:
            console.warn(command, f"{source.name}: no records in it")
    return sources


def read_records(command: str, paths: list[str], validate: Callable[[Record], str | None],
                 skip_invalid: bool = False) -> list[Record]:
    """All records of ``paths`` (``-`` is stdin), each checked; an error if there are none."""
    return [record for source in read_sources(command, paths, validate, skip_invalid)
            for record in source.records]


@dataclass
class Split:
    """The training files' examples and the held-out ones, each grouped by file."""

    sources: list[Source]
    groups: list[list[Any]]
    held: list[list[Any]]
    held_names: list[str]
    separate: bool              # held out from files of their own (--eval-file)

    def counts(self, kept: list[int], held: list[int], what: str, held_what: str
               ) -> dict[str, dict[str, Any]]:
        """The by-file table: each file's training count, and its held-out count (a held-out
        file's under its own name)."""
        counts = by_file([source.name for source in self.sources], **{what: kept},
                         **({} if self.separate else {held_what: held}))
        if self.separate:
            for name, row in by_file(self.held_names, **{held_what: held}).items():
                counts.setdefault(name, {}).update(row)
        return counts


def read_split(command: str, inputs: list[str], eval_inputs: list[str] | None,
               validate: Callable[[Record], str | None], example: Callable[[Record], Any],
               skip_invalid: bool, fraction: float, seed: int) -> Split:
    """Examples read from ``inputs``, with a held-out share of each file's prompts, or the
    examples of ``eval_inputs`` held out, each file measured on its own."""
    sources = read_sources(command, inputs, validate, skip_invalid)
    groups = [[example(r) for r in source.records] for source in sources]
    if eval_inputs:
        held_sources = read_sources(command, eval_inputs, validate, skip_invalid)
        held = [[example(r) for r in source.records] for source in held_sources]
        return Split(sources, groups, held, [s.name for s in held_sources], True)
    groups, held = split_heldout_groups(groups, fraction, seed)
    return Split(sources, groups, held, [s.name for s in sources], False)


def lineage(sources: list[Source]) -> dict[str, Any]:
    """The summary file's ``data``: per input file, the provenance its records carry (which
    models wrote and labelled them), so that ``caitool eval`` can follow a model's chain."""
    from caitool.lineage import of_records

    keys = by_file([source.name for source in sources], index=list(range(len(sources))))
    return {"data": {name: of_records(sources[row["index"]].records) for name, row in keys.items()}}


def by_file(names: list[str], **counts: list[Any]) -> dict[str, dict[str, Any]]:
    """``{file: {what: count}}`` for the metrics and the summary file; a file named twice
    gets its position appended, so that no count is lost."""
    table: dict[str, dict[str, int]] = {}
    for i, name in enumerate(names):
        key = name if name not in table else f"{name} ({i + 1})"
        table[key] = {what: values[i] for what, values in counts.items()}
    return table


def describe(table: dict[str, dict[str, Any]]) -> str:
    """``a.jsonl: 36 pairs, 4 held out; b.jsonl: …``: a by-file table as a note for people."""
    words = {"heldout_pairs": "held out"}
    return "; ".join(f"{name}: " + ", ".join(f"{n} {words.get(what, what)}"
                                             for what, n in counts.items())
                     for name, counts in table.items())


def note_preferences(command: str, sources: list[Source]) -> None:
    """Warn, once each with the first place, of pairs that teach nothing (the same text
    chosen and rejected) and of a ``p_chosen`` of null (read as no p_chosen at all)."""
    same: list[str] = []
    unset: list[str] = []
    for source in sources:
        for line, record in zip(source.lines, source.records, strict=False):
            example = preference_example(record)
            if example.chosen.strip() == example.rejected.strip():
                same.append(f"{source.name}:{line}")
            if "p_chosen" in record and record["p_chosen"] is None:
                unset.append(f"{source.name}:{line}")
    if same:
        console.warn(command, f"{len(same)} pair(s) have the same text chosen and rejected (the "
                              f"first at {same[0]}): their loss is constant, with no gradient, so "
                              "they teach nothing and only dilute the reported loss and accuracy")
    if unset:
        console.warn(command, f"{len(unset)} pair(s) have 'p_chosen': null (the first at "
                              f"{unset[0]}), read as no p_chosen: 'chosen' preferred for certain "
                              "(p = 1)")


def hard_pairs(command: str, examples: Iterable[PreferenceExample]) -> list[PreferenceExample]:
    """Pairs for a hard-label loss: the preferred answer first, ties left out (and counted)."""
    return hard_pair_groups(command, [list(examples)])[0]


def hard_pair_groups(command: str,
                     groups: list[list[PreferenceExample]]) -> list[list[PreferenceExample]]:
    """:func:`hard_pairs` of each group (one per input file), the ties counted together."""
    result: list[list[PreferenceExample]] = []
    ties = 0
    for examples in groups:
        pairs: list[PreferenceExample] = []
        for ex in examples:
            if ex.p_chosen is not None and ex.p_chosen == 0.5:
                ties += 1
                continue
            if ex.p_chosen is not None and ex.p_chosen < 0.5:
                ex = PreferenceExample(ex.prompt, ex.rejected, ex.chosen, 1 - ex.p_chosen,
                                       ex.margin)
            pairs.append(ex)
        result.append(pairs)
    if ties:
        console.warn(command, f"left out {ties} tied pair(s) (p_chosen = 0.5): a hard label "
                              "cannot express a tie; soft labels keep them")
    if not any(result):
        raise CaitoolError("no pairs left to train on: every pair is a tie")
    return result


def split_heldout(examples: list[PreferenceExample], fraction: float,
                  seed: int) -> tuple[list[PreferenceExample], list[PreferenceExample]]:
    """Hold out a fraction of the prompts (every pair of a prompt on the same side)."""
    if fraction <= 0:
        return examples, []
    keys = sorted({ex.key for ex in examples})
    random.Random(seed).shuffle(keys)
    held = set(keys[: int(len(keys) * fraction)])
    train = [ex for ex in examples if ex.key not in held]
    if not train:
        return examples, []
    return train, [ex for ex in examples if ex.key in held]


def split_heldout_groups(groups: list[list[PreferenceExample]], fraction: float, seed: int
                         ) -> tuple[list[list[PreferenceExample]], list[list[PreferenceExample]]]:
    """Hold out a fraction of each group's prompts (a group is one input file), so that
    every file has a held-out share of its own to be measured on. A prompt held out in
    one file is held out wherever it appears, so no held-out prompt is trained on."""
    if fraction <= 0:
        return groups, [[] for _ in groups]
    rng = random.Random(seed)
    held: set[str] = set()
    for examples in groups:
        keys = sorted({ex.key for ex in examples} - held)
        rng.shuffle(keys)
        held.update(keys[: int(len(keys) * fraction)])
    train = [[ex for ex in examples if ex.key not in held] for examples in groups]
    if not any(train):
        return groups, [[] for _ in groups]
    return train, [[ex for ex in examples if ex.key in held] for examples in groups]


def keep_end(ids: list[int], max_length: int | None) -> tuple[list[int], bool]:
    """Cut ``ids`` to their last ``max_length``; returns (ids, whether anything was cut).

    The end is what matters to both users of this: a reward model reads its score at the
    last token, and a policy answers right after the end of its prompt."""
    if max_length is None or len(ids) <= max_length:
        return ids, False
    return ids[-max_length:], True
