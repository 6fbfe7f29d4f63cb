"""The import loop: files of rows -> records with ids and provenance -> whole batches out.

Records are written batch by batch as the rows are read, so a bad row ends the run with the
records before it already written (or, with ``skip_invalid``, is named and skipped). Ids come
from the content (a prompt's :func:`caitool.schema.stable_id`, a pair's hash of prompt and
answers) unless a row brings its own, so the same data gives the same ids in any order; a
row whose id came before (a repeated prompt, a repeated pair) is left out and counted.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from caitool import schema
from caitool.errors import CaitoolError, InputError
from caitool.imports import readers
from caitool.imports.formats import FORMATS, Format, Options
from caitool.io.jsonl import RecordWriter, check_outputs, source_name

Record = dict[str, Any]
BATCH = 256


@dataclass
class Stats:
    files: int = 0
    rows: int = 0
    written: int = 0
    repeats: int = 0
    first_repeat: str = ""
    skipped: int = 0
    same_answers: int = 0
    first_same: str = ""


def resolve(name: str, options: Options) -> Format:
    """The format ``name`` names, with ``options`` checked against it: one line for a name
    that is none or a flag it does not take."""
    fmt = FORMATS.get(name)
    if fmt is None:
        close = difflib.get_close_matches(name, list(FORMATS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise CaitoolError(f"unknown format '{name}'{hint}; the formats are: {', '.join(FORMATS)}")
    if options.as_ not in ("prompts", "prefs"):
        raise CaitoolError(f"--as must be prompts or prefs, not '{options.as_}'")
    if options.as_ not in fmt.gives:
        givers = ", ".join(f.name for f in FORMATS.values() if options.as_ in f.gives)
        raise CaitoolError(f"{name} gives prompts only; --as {options.as_} needs {givers}")
    given = {"turns": options.turns, "label": options.label, "field": options.field}
    allowed = {"turns": ("first", "all"), "label": ("better", "safer"), "field": None}
    for flag, value in given.items():
        if value is None:
            continue
        if flag not in fmt.takes:
            takers = ", ".join(f.name for f in FORMATS.values() if flag in f.takes)
            raise CaitoolError(f"--{flag} is for {takers}, not {name}")
        if allowed[flag] and value not in allowed[flag]:
            raise CaitoolError(f"--{flag} must be {' or '.join(allowed[flag])}, not '{value}'")
    if options.turns and options.as_ == "prefs":
        raise CaitoolError("--turns shapes prompts; preferences keep the whole conversation")
    if options.label and options.as_ != "prefs":
        raise CaitoolError("--label picks the chosen answer of --as prefs")
    if options.field is not None and not options.field:
        raise CaitoolError("--field needs a column name")
    return fmt


def check_inputs(paths: list[str], output: str | None) -> None:
    """Every input readable and none of them the output, before anything is written."""
    if not paths:
        raise CaitoolError("no input: give one or more files (- for stdin)")
    if paths.count("-") > 1:
        raise CaitoolError("stdin (-) can be read only once")
    for path in paths:
        readers.check_path(path)
    check_outputs([("-o", output)], [("", path) for path in paths])


def run(name: str, paths: list[str], options: Options, output: str | None = None,
        skip_invalid: bool = False, on_skip: Callable[[InputError], None] | None = None,
        batch_size: int = BATCH) -> Stats:
    """Import ``paths`` as format ``name`` into ``output`` (stdout if None)."""
    fmt = resolve(name, options)
    check_inputs(paths, output)
    stats = Stats()

    def skipped(error: InputError) -> None:
        stats.skipped += 1
        if on_skip:
            on_skip(error)

    with RecordWriter(output, flag="-o") as writer:
        batch: list[Record] = []
        try:
            for _, record in _records(fmt, paths, options, stats, skip_invalid, skipped):
                batch.append(record)
                if len(batch) >= batch_size:
                    whole, batch = batch, []
                    stats.written += writer.write(whole)
        except CaitoolError:
            # Whatever ends the rows (a bad row, a file cut short, an empty second file),
            # the records read before it are written first (none if the writer failed).
            stats.written += writer.write(batch)
            raise
        stats.written += writer.write(batch)
    if not stats.written and stats.skipped:
        raise CaitoolError(f"no row could be imported as {name} ({stats.skipped} skipped); is "
                           f"this {name} data?")
    return stats


def _records(fmt: Format, paths: list[str], options: Options, stats: Stats, skip_invalid: bool,
             skipped: Callable[[InputError], None]) -> Iterator[tuple[int, Record]]:
    seen: set[str] = set()
    for path in paths:
        stats.files += 1
        rows_before, skipped_before = stats.rows, stats.skipped
        for row in readers.rows(path, fmt.reads, skip_invalid, skipped):
            stats.rows += 1
            try:
                record = _convert(fmt, row, options)
            except readers.Mismatch as exc:
                if not skip_invalid:
                    raise row.error(str(exc)) from None
                skipped(row.error(str(exc)))
                continue
            where = f"{row.source}:{row.line}" if row.line is not None else f"{row.source}:row {row.row}"
            if options.as_ == "prefs" and record["chosen"] == record["rejected"]:
                stats.same_answers += 1
                stats.first_same = stats.first_same or where
                continue
            if record["id"] in seen:
                stats.repeats += 1
                stats.first_repeat = stats.first_repeat or where
                continue
            seen.add(record["id"])
            yield row.line or row.row or 0, record
        if stats.rows == rows_before and stats.skipped == skipped_before:
            raise CaitoolError(f"{source_name(path)}: no rows to import (an empty file?)")


def _convert(fmt: Format, row: readers.Row, options: Options) -> Record:
    converted = fmt.convert(dict(row.values), options)
    check = schema.check_preference if options.as_ == "prefs" else schema.check_prompt
    problem = check(converted)
    if problem:
        raise readers.Mismatch(problem)
    own = converted.pop("id", None)
    record = {"id": own if own not in (None, "") else _content_id(converted, options), **converted}
    settings = {key: value for key, value in (("as", options.as_), ("turns", options.turns),
                                              ("label", options.label), ("field", options.field))
                if value is not None}
    if options.as_ == "prefs" and fmt.name == "pku-saferlhf":
        settings.setdefault("label", "safer")
    schema.add_provenance(record, "import", {"format": fmt.name, "file": row.source,
                                             **row.place(), **settings})
    return record


def _content_id(record: Record, options: Options) -> str:
    if options.as_ == "prompts":
        return schema.stable_id(record)
    key = [schema.trl_prompt(record), record["chosen"], record["rejected"]]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return "pair-" + digest[:12]
