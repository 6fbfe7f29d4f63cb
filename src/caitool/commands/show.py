from __future__ import annotations

import sys
from typing import Annotated

import typer

from caitool.commands._flags import Input
from caitool.errors import CaitoolError, InputError

NAME = "show"
EXAMPLE = """    caitool show round4.jsonl                 # page through records
    caitool critique -m ./tiny < examples/smoke.jsonl | caitool revise -m ./tiny | caitool show
    caitool show prefs.jsonl --id smoke-3 --no-pager
    caitool show --summary round2.jsonl       # how many responses the revisions changed"""


def command(
    input: Input = "-",
    limit: Annotated[int | None, typer.Option(
        "-n", "--limit", help="Show at most N records.")] = None,
    ids: Annotated[list[str] | None, typer.Option(
        "--id", help="Show only the record with this id (repeatable).")] = None,
    no_pager: Annotated[bool, typer.Option(
        "--no-pager", help="Print straight to the terminal instead of paging.")] = False,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Report and skip bad input lines instead of stopping.")] = False,
    summary: Annotated[bool, typer.Option(
        "--summary", help="One screen about the whole file instead of the records: revisions "
                          "that changed the response, lengths before and after, principles, "
                          "labels.")] = False,
) -> None:
    """Render records for reading: prompt, responses, each round's principle, critique and
    revision (changes highlighted), preferences with their probabilities, training metrics.

    Pages through the records ($PAGER, else less) when stdout is a terminal; otherwise prints
    plain text, with changes marked [-removed-] and {+added+}. This is the one command whose
    stdout is for people, not for other commands.
    """
    from rich.console import Console

    from caitool import console as messages
    from caitool import view
    from caitool.io.jsonl import iter_records, source_name

    if limit is not None and limit < 1:
        raise CaitoolError("--limit must be at least 1")
    if input in (None, "-") and sys.stdin.isatty():
        raise CaitoolError("no input: give a JSONL file, or pipe records in")
    wanted = set(ids or [])
    source = source_name(input)
    failure: list[InputError] = []

    def selected():
        shown = 0
        records = iter_records(input, skip_invalid=skip_invalid,
                               on_skip=lambda e: messages.warn(NAME, f"{e} (skipped)"))
        try:
            for lineno, record in records:
                if wanted and str(record.get("id")) not in wanted:
                    continue
                yield f"{source}:{lineno}", record
                shown += 1
                if limit is not None and shown >= limit:
                    break
        except InputError as error:
            # Show what came before the bad line, then report it.
            failure.append(error)

    out = Console(highlight=False)
    if summary:
        from caitool import summary as digest

        out.print(digest.table(digest.summarize((r for _, r in selected()), view.kind), source))
        if failure:
            raise failure[0]
        return
    markers = out.color_system is None
    if sys.stdout.isatty() and not no_pager:
        with out.pager(view.Pager(), styles=True):
            for renderable in view.render_stream(selected(), markers):
                out.print(renderable)
    else:
        for renderable in view.render_stream(selected(), markers):
            out.print(renderable)
    if failure:
        raise failure[0]
