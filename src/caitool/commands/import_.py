from __future__ import annotations

from typing import Annotated

import typer

from caitool import console
from caitool.errors import CaitoolError

NAME = "import"
EXAMPLE = (
    "    caitool import red-team-attempts red_team_attempts.jsonl.gz --turns all > prompts.jsonl\n"
    "    caitool import hh-rlhf --as prefs harmless-base/train.jsonl.gz | caitool train-rm - -m ./sft -o ./rm\n"
    "    caitool import pku-saferlhf --as prefs --label better train.parquet -o pku-prefs.jsonl\n"
    "    caitool import beavertails 330k_train.jsonl.xz -o beavertails-prompts.jsonl\n"
    "    caitool import csv questions.csv --field question > helpful.jsonl"
)


def command(
    format: Annotated[str, typer.Argument(
        help="The data's shape: hh-rlhf, red-team-attempts, pku-saferlhf, beavertails, text "
             "(a prompt per line), or jsonl/json/csv/parquet (a prompt column, --field).",
        show_default=False)],
    files: Annotated[list[str], typer.Argument(
        help="JSON Lines, JSON (one array), CSV/TSV or Parquet files, or directories that "
             "datasets' save_to_disk wrote; .gz/.bz2/.xz (.zst with zstandard) are read as "
             "they are; - for stdin.", show_default=False)],
    as_: Annotated[str, typer.Option(
        "--as", help="prompts: prompt records (for generate, critique, make all); prefs: TRL "
                     "preference pairs from the data's human labels (hh-rlhf, pku-saferlhf).")] = "prompts",
    turns: Annotated[str | None, typer.Option(
        "--turns", help="hh-rlhf, red-team-attempts prompts: first (the first human turn alone; "
                        "red-team-attempts' default) or all (the conversation to its last human "
                        "turn; hh-rlhf's default).", show_default=False)] = None,
    label: Annotated[str | None, typer.Option(
        "--label", help="pku-saferlhf --as prefs: which label picks 'chosen', safer or better "
                        "(default safer).", show_default=False)] = None,
    field: Annotated[str | None, typer.Option(
        "--field", help="jsonl/json/csv/parquet: the column holding the prompt (default "
                        "prompt).", show_default=False)] = None,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="Write records to FILE instead of stdout.")] = None,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Report and skip bad rows instead of stopping.")] = False,
) -> None:
    """Turn public red-team and preference data into caitool records (JSONL on stdout).

    Prompts keep every field of the row that the record does not consume (ratings, scores,
    categories, labels); a transcript becomes 'messages' (or 'prompt'), and answer texts stay
    out of prompt records, so that 'critique' answers anew. Preferences are TRL's 'prompt',
    'chosen', 'rejected'. Each record gets an id from its content (the same data gives the
    same ids; a repeated prompt or pair is left out) and provenance.import: format, file and
    line (or row, for Parquet and datasets directories). A bad row is one line,
    FILE:LINE: problem (FILE:row N: where a file has no lines), after the records before it
    are written. See docs/data.md.
    """
    from caitool.imports import run
    from caitool.imports.formats import Options

    if not files:
        raise CaitoolError("no input: give one or more files (- for stdin)")
    stats = run.run(format, files, Options(as_=as_, turns=turns, label=label, field=field),
                    output=output, skip_invalid=skip_invalid,
                    on_skip=lambda error: console.warn(NAME, f"{error} (skipped)"))
    if stats.same_answers:
        console.warn(NAME, f"{stats.same_answers} pair(s) left out: 'chosen' and 'rejected' are "
                     f"the same text (the first at {stats.first_same})")
    summary = f"{stats.written} records written from {stats.rows} rows"
    if stats.repeats:
        summary += (f", {stats.repeats} repeating an earlier record left out (the first at "
                    f"{stats.first_repeat})")
    if stats.skipped:
        summary += f", {stats.skipped} invalid rows skipped"
    console.info(NAME, summary)
