"""Streaming JSONL: read records with line numbers, write whole batches, resume.

Reading is strict (a bad line is an :class:`InputError` naming the file and line) unless
``skip_invalid`` is set. Writing emits whole lines only and flushes each batch at once, so a
downstream command in a pipe starts work before this one ends.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from caitool.errors import CaitoolError, InputError
from caitool.io import values
from caitool.io.output import (
    RecordWriter,
    check_outputs,
    check_writable,
    lock_holder,
    same_file,
    stdout_closed,
    write_text,
)

__all__ = ["RecordWriter", "check_outputs", "check_writable", "done_ids", "iter_records",
           "lock_holder", "parse_line", "same_file", "source_name", "stdout_closed", "write_text"]

Validator = Callable[[dict[str, Any]], "str | None"]
BOM = b"\xef\xbb\xbf"
STDIN_CLOSED = "stdin is closed: give a JSONL file, or pipe records in"


def source_name(path: str | None) -> str:
    return "<stdin>" if path in (None, "-") else str(path)


def stdin_closed() -> bool:
    return sys.stdin is None or bool(getattr(sys.stdin, "closed", False))


@contextmanager
def open_binary(path: str | None) -> Iterator[BinaryIO]:
    if path in (None, "-"):
        if stdin_closed():
            raise CaitoolError(STDIN_CLOSED)
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise CaitoolError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaitoolError(f"{path}: is a directory, not a JSONL file") from None
    except PermissionError:
        raise CaitoolError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CaitoolError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    with handle:
        yield handle


def parse_line(raw: bytes, source: str, lineno: int) -> dict[str, Any] | None:
    """One JSONL line as a dict; None for a blank line; InputError otherwise."""
    if lineno == 1 and raw.startswith(BOM):
        raw = raw[len(BOM):]  # editors on Windows start UTF-8 files with one
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(source, lineno, f"invalid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        return None
    try:
        value = values.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except values.NotJSON as exc:
        raise InputError(source, lineno, str(exc)) from None
    except RecursionError:
        raise InputError(source, lineno, f"nested deeper than {values.MAX_DEPTH} levels") from None
    except ValueError:  # Python refuses to parse very long integers
        raise InputError(source, lineno, "an integer with more than "
                         f"{values.int_digit_limit()} digits") from None
    if not isinstance(value, dict):
        raise InputError(source, lineno, f"expected a JSON object, got {type(value).__name__}")
    # Refused here, in any field: a record that could not be written back out whole would
    # otherwise fail only after its batch was done, or reach the next command as bad UTF-8.
    if values.suspicious(raw):
        problem = values.problem(value)
        if problem:
            raise InputError(source, lineno, problem)
    return value


def iter_records(
    path: str | None,
    validate: Validator | None = None,
    skip_invalid: bool = False,
    on_skip: Callable[[InputError], None] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, record)``; raise InputError at the first bad line unless skipping."""
    with open_binary(path) as handle:
        yield from parse_lines(handle, source_name(path), validate, skip_invalid, on_skip)


def parse_lines(
    lines: Iterable[bytes],
    source: str,
    validate: Validator | None = None,
    skip_invalid: bool = False,
    on_skip: Callable[[InputError], None] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`iter_records` over lines from anywhere (a file, an object store's bytes), named
    ``source`` in errors."""
    for lineno, raw in enumerate(lines, start=1):
        try:
            record = parse_line(raw, source, lineno)
            if record is None:
                continue
            problem = validate(record) if validate else None
            if problem:
                raise InputError(source, lineno, problem)
        except InputError as error:
            if not skip_invalid:
                raise
            if on_skip:
                on_skip(error)
            continue
        yield lineno, record


def count_lines(path: str | None) -> int | None:
    """Lines in a regular file (for a progress total); None for pipes."""
    if path in (None, "-") or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def done_ids(path: str) -> set[str]:
    """Ids already in an output file, dropping a torn last line left by a killed run."""
    file = Path(path)
    if not file.is_file():
        return set()
    with open(file, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                # A run killed mid-write can leave a partial line; it is redone on resume.
                data = file.read_bytes()
                handle.truncate(data.rfind(b"\n") + 1)
    with open(file, "rb") as handle:
        return ids_in(handle, path)


def ids_in(lines: Iterable[bytes], source: str) -> set[str]:
    """The ids of the records in ``lines``; a line that does not parse holds none."""
    ids: set[str] = set()
    for lineno, raw in enumerate(lines, start=1):
        try:
            record = parse_line(raw, source, lineno)
        except InputError:
            continue
        if record is not None and "id" in record:
            ids.add(str(record["id"]))
    return ids
