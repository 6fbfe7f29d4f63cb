"""The public shapes of red-team and preference data, each as one function from a row to a
caitool record (a prompt, or a TRL preference pair), and the registry of their names.

A function takes the row's fields as the dataset publishes them and returns the record
without its ``id`` and provenance (the import loop adds those). Fields it consumes are left
out; every other field of the row passes through unchanged. A row of the wrong shape is a
:class:`Mismatch` saying what was expected.

What is consumed, and why: a transcript is re-expressed as ``messages``/``prompt``; an
answer text (hh-rlhf's ``chosen``/``rejected`` transcripts, PKU's ``response_0``/``response_1``,
BeaverTails' ``response``) is left out of a prompt record because later commands would read
it as their own (``critique`` critiques a record's ``response`` instead of answering anew).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from caitool.imports import transcripts
from caitool.imports.rows import Mismatch

Record = dict[str, Any]


@dataclass(frozen=True)
class Options:
    """How rows become records: ``as_`` prompts or prefs; ``turns`` first or all (None: the
    format's default); ``label`` better or safer (PKU-SafeRLHF); ``field``: the prompt's
    column (the generic formats)."""

    as_: str = "prompts"
    turns: str | None = None
    label: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class Format:
    name: str
    summary: str
    convert: Callable[[Record, Options], Record]
    gives: tuple[str, ...] = ("prompts",)
    takes: frozenset[str] = field(default_factory=frozenset)  # of turns, label, field
    reads: str = "json"  # the file kind when neither content nor name tells


def _keys(row: Record) -> str:
    names = [f"'{name}'" for name in list(row)[:6]]
    more = ", ..." if len(row) > 6 else ""
    return f"; the row has {', '.join(names)}{more}" if names else "; the row is empty"


def _rest(row: Record, *consumed: str) -> Record:
    return {k: v for k, v in row.items() if k not in consumed}


def _text(row: Record, name: str, shape: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise Mismatch(shape + _keys(row) if name not in row else
                       f"'{name}' must be a string, not {type(value).__name__}")
    if not value.strip():
        raise Mismatch(f"'{name}' is empty")
    return value


def _number(row: Record, name: str, required: bool = False) -> None:
    """Check a score field, turning a numeric string (what CSV holds) into its number."""
    if name not in row or (row[name] is None and not required):
        if required:
            raise Mismatch(f"missing '{name}' (a number)")
        return
    value = row[name]
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            row[name] = int(number) if number.is_integer() and "." not in value else number
            return
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return
    raise Mismatch(f"'{name}' is {value!r}, not a number")


# -- hh-rlhf --------------------------------------------------------------------------------

HH_SHAPE = ("not an hh-rlhf row: expected 'chosen' and 'rejected' transcripts ('\\n\\nHuman: "
            "...\\n\\nAssistant: ...' strings)")


def hh_rlhf(row: Record, options: Options) -> Record:
    """``{chosen, rejected}``: two transcripts of one conversation that differ in the last
    reply. Prompts: the conversation to its last human turn (``--turns first``: the first
    request alone). Preferences: that conversation as TRL's ``prompt`` list, and the two last
    replies as ``chosen`` and ``rejected``."""
    chosen = transcripts.parse(_text(row, "chosen", HH_SHAPE), "chosen")
    rejected_text = _text(row, "rejected", HH_SHAPE)
    rest = _rest(row, "chosen", "rejected")
    if options.as_ == "prompts":
        if options.turns == "first":
            return {**rest, "prompt": transcripts.first_request(chosen, "chosen")}
        return {**rest, "messages": transcripts.conversation(chosen, "chosen")}
    rejected = transcripts.parse(rejected_text, "rejected")
    prompt = transcripts.conversation(chosen, "chosen")
    if transcripts.conversation(rejected, "rejected") != prompt:
        raise Mismatch("'chosen' and 'rejected' differ before their last reply (expected one "
                       "conversation with two endings)")
    return {**rest, "prompt": prompt, "chosen": transcripts.final_reply(chosen, "chosen"),
            "rejected": transcripts.final_reply(rejected, "rejected")}


# -- red-team-attempts -----------------------------------------------------------------------

RED_TEAM_SHAPE = ("not a red-team-attempts row: expected a 'transcript' ('\\n\\nHuman: ...' "
                  "turns) with a 'rating'")
SCORES = ("min_harmlessness_score_transcript", "task_descripton_harmlessness_score",
          "task_description_harmlessness_score")


def red_team_attempts(row: Record, options: Options) -> Record:
    """``{transcript, rating, task_description, ...}``: one red-team conversation. Prompts:
    its first human turn (``--turns first``, the default) or the conversation to its last
    human turn (``--turns all``). The rating and every score pass through, as numbers."""
    turns = transcripts.parse(_text(row, "transcript", RED_TEAM_SHAPE), "transcript")
    row = dict(row)
    _number(row, "rating", required="rating" in row)
    for name in SCORES:
        _number(row, name)
    rest = _rest(row, "transcript")
    if options.turns == "all":
        return {**rest, "messages": transcripts.conversation(turns, "transcript")}
    return {**rest, "prompt": transcripts.first_request(turns, "transcript")}


# -- PKU-SafeRLHF ----------------------------------------------------------------------------

PKU_SHAPE = ("not a PKU-SafeRLHF row: expected 'prompt', 'response_0' and 'response_1' (with "
             "'better_response_id' and 'safer_response_id')")


def _choice(row: Record, name: str) -> int:
    value = row.get(name)
    if name not in row:
        raise Mismatch(f"missing '{name}' (0 or 1)")
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    raise Mismatch(f"'{name}' is {value!r}, not 0 or 1")


def pku_saferlhf(row: Record, options: Options) -> Record:
    """``{prompt, response_0, response_1, better_response_id, safer_response_id, ...}``.
    Prompts: the prompt. Preferences: the response the label picks (``--label safer``, the
    default, or ``better``) as ``chosen`` over the other; the labels and safety flags pass
    through."""
    prompt = _text(row, "prompt", PKU_SHAPE)
    answers = [_text(row, f"response_{i}", PKU_SHAPE) for i in (0, 1)]
    rest = _rest(row, "prompt", "response_0", "response_1")
    if options.as_ == "prompts":
        return {**rest, "prompt": prompt}
    picked = _choice(row, f"{options.label or 'safer'}_response_id")
    return {**rest, "prompt": prompt, "chosen": answers[picked], "rejected": answers[1 - picked]}


# -- BeaverTails -----------------------------------------------------------------------------

BEAVERTAILS_SHAPE = ("not a BeaverTails row: expected 'prompt', 'response', 'is_safe' and "
                     "'category' (an object of harm category -> true/false)")


def beavertails(row: Record, options: Options) -> Record:
    """``{prompt, response, is_safe, category}``: prompts. ``category`` passes through as the
    dataset has it, and ``categories`` lists the names marked true (they describe the
    dataset's response; of a prompt's rows the first is kept)."""
    prompt = _text(row, "prompt", BEAVERTAILS_SHAPE)
    category = row.get("category")
    if not isinstance(category, dict):
        raise Mismatch(BEAVERTAILS_SHAPE + _keys(row) if "category" not in row else
                       f"'category' must be an object of harm category -> true/false, not "
                       f"{type(category).__name__}")
    wrong = [name for name, flag in category.items() if not isinstance(flag, bool) and flag is not None]
    if wrong:
        raise Mismatch(f"'category.{wrong[0]}' is {category[wrong[0]]!r}, not true or false")
    return {**_rest(row, "response"), "prompt": prompt,
            "categories": [name for name, flag in category.items() if flag]}


# -- plain text and generic columns ----------------------------------------------------------


def text(row: Record, options: Options) -> Record:
    """One prompt per line of text (blank lines are skipped)."""
    return {"prompt": row["text"]}


def column(row: Record, options: Options) -> Record:
    """Rows of any table (JSON Lines, a JSON array, CSV, Parquet, a datasets directory)
    whose ``--field`` column (default ``prompt``) holds the prompt: a string, or a list of
    chat messages ending with a user turn. Every other column passes through, ``id`` too."""
    name = options.field or "prompt"
    if name not in row:
        raise Mismatch(f"no '{name}' field (name the prompt's column with --field{_keys(row)})")
    value = row[name]
    if not isinstance(value, (str, list)):
        raise Mismatch(f"'{name}' must be a string or a list of messages, not {type(value).__name__}")
    if name != "prompt" and "prompt" in row:
        raise Mismatch(f"the row has a 'prompt' field besides --field '{name}'; name that one")
    return {**_rest(row, name), "prompt": value}


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("hh-rlhf", "Anthropic's HH-RLHF pairs of transcripts", hh_rlhf,
           gives=("prompts", "prefs"), takes=frozenset({"turns"})),
    Format("red-team-attempts", "hh-rlhf's red-team transcripts with ratings", red_team_attempts,
           takes=frozenset({"turns"})),
    Format("pku-saferlhf", "PKU-SafeRLHF prompts with two responses and labels", pku_saferlhf,
           gives=("prompts", "prefs"), takes=frozenset({"label"})),
    Format("beavertails", "BeaverTails prompts and harm categories", beavertails),
    Format("text", "one prompt per line", text, reads="text"),
    Format("jsonl", "JSON rows with a prompt column (--field)", column, takes=frozenset({"field"})),
    Format("json", "JSON rows with a prompt column (--field)", column, takes=frozenset({"field"})),
    Format("csv", "CSV rows with a prompt column (--field)", column, takes=frozenset({"field"}),
           reads="csv"),
    Format("parquet", "Parquet rows with a prompt column (--field)", column,
           takes=frozenset({"field"}), reads="parquet"),
)}
