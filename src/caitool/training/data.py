"""Training data: reading checked records, and what the trainers do with whole datasets.

Every input line is checked (by a :mod:`caitool.schema` check) while it is read, so a bad
record is reported as ``file:line: problem`` before a model or tokenizer is loaded.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.io.jsonl import iter_records, source_name
from caitool.schema import PreferenceExample

Record = dict[str, Any]


def read_records(command: str, paths: list[str], validate: Callable[[Record], str | None],
                 skip_invalid: bool = False) -> list[Record]:
    """All records of ``paths`` (``-`` is stdin), each checked; an error if there are none."""
    records: list[Record] = []

    def skipped(error: InputError) -> None:
        console.warn(command, f"skipped {error}")

    for path in paths or ["-"]:
        if path == "-" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise CaitoolError("under accelerate launch or torchrun, name the input files: "
                               "stdin reaches one process only")
        for _, record in iter_records(path, validate, skip_invalid=skip_invalid, on_skip=skipped):
            records.append(record)
    if not records:
        names = ", ".join(source_name(p) for p in paths or ["-"])
        raise CaitoolError(f"{names}: no training examples (the input is empty)")
    return records


def hard_pairs(command: str, examples: Iterable[PreferenceExample]) -> list[PreferenceExample]:
    """Pairs for a hard-label loss: the preferred answer first, ties left out (and counted)."""
    pairs: list[PreferenceExample] = []
    ties = 0
    for ex in examples:
        if ex.p_chosen is not None and ex.p_chosen == 0.5:
            ties += 1
            continue
        if ex.p_chosen is not None and ex.p_chosen < 0.5:
            ex = PreferenceExample(ex.prompt, ex.rejected, ex.chosen, 1 - ex.p_chosen, ex.margin)
        pairs.append(ex)
    if ties:
        console.warn(command, f"left out {ties} tied pair(s) (p_chosen = 0.5): a hard label "
                              "cannot express a tie; soft labels keep them")
    if not pairs:
        raise CaitoolError("no pairs left to train on: every pair is a tie")
    return pairs


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


def keep_end(ids: list[int], max_length: int | None) -> tuple[list[int], bool]:
    """Cut ``ids`` to their last ``max_length``; returns (ids, whether anything was cut).

    The end is what matters to both users of this: a reward model reads its score at the
    last token, and a policy answers right after the end of its prompt."""
    if max_length is None or len(ids) <= max_length:
        return ids, False
    return ids[-max_length:], True
